/*
 * Output helpers shared by the commands: JSON through json-c, human-readable
 * sizes and expert-load bars.
 */
#ifndef MOECTL_OUTPUT_H
#define MOECTL_OUTPUT_H

#include <json-c/json.h>
#include <stddef.h>
#include <stdint.h>

/* Print obj (pretty) on stdout with a newline and release it. */
void json_print(json_object *obj);
json_object *json_u64_array(const uint64_t *v, size_t n);
json_object *json_float_array(const float *v, size_t n);
/* "1.5 GiB" */
const char *human_bytes(uint64_t n, char *buf, size_t len);
/* A bar of up to `width` cells for value/max. */
void print_bar(uint64_t value, uint64_t max, int width);

#endif
