/*
 * The request table as data (see proto/protocol.h) and version negotiation.
 */
#include "config.h"

#include "proto/protocol.h"

const struct request_kind request_kinds[] = {
#define REQUEST(body, name, reply, admin, command) \
	{ MOED__REQUEST__BODY_##body, #name, MOED__RESPONSE__BODY_##reply, REQUEST_ADMIN_##admin, command },
#include "proto/requests.def"
#undef REQUEST
};
const size_t n_request_kinds = sizeof(request_kinds) / sizeof(request_kinds[0]);

const struct request_kind *request_kind_of(Moed__Request__BodyCase body)
{
	for (size_t i = 0; i < n_request_kinds; i++)
		if (request_kinds[i].body == body)
			return &request_kinds[i];
	return NULL;
}

unsigned protocol_negotiate(const Moed__HelloRequest *hello)
{
	unsigned lo = hello->protocol_version, hi = hello->protocol_version;

	if (hello->has_min_protocol_version && hello->has_max_protocol_version) {
		lo = hello->min_protocol_version;
		hi = hello->max_protocol_version;
	}
	if (hi > MOED_PROTOCOL_VERSION)
		hi = MOED_PROTOCOL_VERSION;
	if (lo < MOED_PROTOCOL_VERSION_MIN)
		lo = MOED_PROTOCOL_VERSION_MIN;
	return lo <= hi ? hi : 0;
}
