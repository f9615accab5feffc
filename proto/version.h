/*
 * Constants moed and moectl must agree on, with no dependencies: the protocol
 * versions spoken and the default socket path.  A hello offers a range
 * [min_protocol_version, max_protocol_version] (or just protocol_version) and
 * the daemon answers with the highest version both speak.
 */
#ifndef MOED_VERSION_H
#define MOED_VERSION_H

#define MOED_PROTOCOL_VERSION_MIN 1u
#define MOED_PROTOCOL_VERSION 1u

#define MOED_DEFAULT_SOCKET "/run/moed.sock"

#endif
