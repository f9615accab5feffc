/*
 * The request table (proto/requests.def) against the schema: every oneof case
 * of moed.Request has exactly one row, every row's reply is a oneof case of
 * moed.Response, names are the schema's field names, and version negotiation
 * picks the highest common version.  Handlers missing for a row fail the link
 * of moed itself (dispatch.c names handle_<name> for every row).
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proto/protocol.h"

static const ProtobufCFieldDescriptor *oneof_field(const ProtobufCMessageDescriptor *d,
						   unsigned id)
{
	for (unsigned i = 0; i < d->n_fields; i++)
		if (d->fields[i].id == id && (d->fields[i].flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
			return &d->fields[i];
	return NULL;
}

static void every_request_case_has_one_row(void **state)
{
	const ProtobufCMessageDescriptor *d = &moed__request__descriptor;
	unsigned n_oneof = 0;

	(void)state;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		unsigned rows = 0;
		if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
			continue;
		n_oneof++;
		for (size_t k = 0; k < n_request_kinds; k++)
			rows += request_kinds[k].body == (Moed__Request__BodyCase)f->id;
		if (rows != 1)
			fail_msg("Request.%s (case %u) has %u rows in proto/requests.def, want 1",
				 f->name, f->id, rows);
		const struct request_kind *k = request_kind_of((Moed__Request__BodyCase)f->id);
		assert_non_null(k);
		assert_string_equal(k->name, f->name);
	}
	assert_int_equal(n_oneof, n_request_kinds);
}

static void every_row_has_a_reply_case(void **state)
{
	(void)state;
	for (size_t k = 0; k < n_request_kinds; k++) {
		const struct request_kind *r = &request_kinds[k];
		if (!oneof_field(&moed__response__descriptor, (unsigned)r->reply))
			fail_msg("row '%s': reply case %d is not a oneof field of moed.Response",
				 r->name, (int)r->reply);
		assert_true(r->admin == REQUEST_ADMIN_never || r->admin == REQUEST_ADMIN_always ||
			    r->admin == REQUEST_ADMIN_changes);
		assert_non_null(r->command);
	}
	/* changing requests need an admin peer; reading ones do not */
	assert_int_equal(request_kind_of(MOED__REQUEST__BODY_ROUTER_SET)->admin, REQUEST_ADMIN_always);
	assert_int_equal(request_kind_of(MOED__REQUEST__BODY_RELOAD)->admin, REQUEST_ADMIN_always);
	assert_int_equal(request_kind_of(MOED__REQUEST__BODY_STATS)->admin, REQUEST_ADMIN_never);
	assert_null(request_kind_of(MOED__REQUEST__BODY__NOT_SET));
}

static unsigned negotiate(unsigned v, int range, unsigned lo, unsigned hi)
{
	Moed__HelloRequest h = MOED__HELLO_REQUEST__INIT;

	h.protocol_version = v;
	h.has_min_protocol_version = h.has_max_protocol_version = range;
	h.min_protocol_version = lo;
	h.max_protocol_version = hi;
	return protocol_negotiate(&h);
}

static void negotiation(void **state)
{
	(void)state;
	assert_int_equal(negotiate(1, 0, 0, 0), 1);             /* first-release clients */
	assert_int_equal(negotiate(2, 0, 0, 0), 0);             /* a version we do not speak */
	assert_int_equal(negotiate(0, 0, 0, 0), 0);
	assert_int_equal(negotiate(7, 1, 1, 9), MOED_PROTOCOL_VERSION);   /* highest common */
	assert_int_equal(negotiate(1, 1, 2, 9), MOED_PROTOCOL_VERSION >= 2 ? MOED_PROTOCOL_VERSION : 0);
	assert_int_equal(negotiate(1, 1, 3, 2), 0);             /* empty range */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_request_case_has_one_row),
		cmocka_unit_test(every_row_has_a_reply_case),
		cmocka_unit_test(negotiation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
