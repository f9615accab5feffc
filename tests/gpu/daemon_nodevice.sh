#!/bin/bash
# The daemon-facing failure path of the cuda backend, on any host: with every
# GPU hidden, `moectl expert set cuda` fails with the plugin's reason, and the
# cpu backend keeps serving (same generation, infer still answers).
. "$top_srcdir/tests/lib.sh"
export CUDA_VISIBLE_DEVICES=
start_moed --model synthetic:S0 --workers 2 || exit 1
before=$("$MOECTL" status | grep -E '^ +cpu +expert')
[ -n "$before" ] || fail "cpu expert backend not loaded at start"
expect_fail 1 "no usable GPU" "$MOECTL" expert set cuda
expect_fail 1 "parameter 'device'" "$MOECTL" expert set cuda --param device=abc
after=$("$MOECTL" status | grep -E '^ +cpu +expert')
[ "$before" = "$after" ] && ok "cpu backend still serving: $after" ||
	fail "expert backend changed: '$before' -> '$after'"
"$MOECTL" infer --layer 3 --random 4 >/dev/null && ok "infer answers" || fail "infer after refusal"
stop_moed
finish
