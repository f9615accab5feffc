/*
 * Output helpers.  JSON is built as json-c objects and serialised by json-c,
 * never assembled with printf.
 */
#include "config.h"

#include <stdio.h>

#include "client/output.h"

void json_print(json_object *obj)
{
	puts(json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PRETTY |
						 JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(obj);
}

json_object *json_u64_array(const uint64_t *v, size_t n)
{
	json_object *a = json_object_new_array_ext((int)n);

	for (size_t i = 0; i < n; i++)
		json_object_array_add(a, json_object_new_uint64(v[i]));
	return a;
}

json_object *json_float_array(const float *v, size_t n)
{
	json_object *a = json_object_new_array_ext((int)n);

	for (size_t i = 0; i < n; i++)
		json_object_array_add(a, json_object_new_double(v[i]));
	return a;
}

const char *human_bytes(uint64_t n, char *buf, size_t len)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)n;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
	return buf;
}

void print_bar(uint64_t value, uint64_t max, int width)
{
	int cells = max ? (int)((value * (uint64_t)width * 8 + max / 2) / max) : 0;
	static const char *parts[] = { "", "▏", "▎", "▍", "▌", "▋", "▊", "▉" };

	for (int i = 0; i < cells / 8; i++)
		fputs("█", stdout);
	fputs(parts[cells % 8], stdout);
	for (int i = (cells + 7) / 8; i < width; i++)
		putchar(' ');
}
