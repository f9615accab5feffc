# Router hot swaps under load, shared by hotswap.sh and cluster_load.sh
# (sourced after tests/lib.sh; needs PY and MOECTL): swap_under_load starts
# swapload.py's clients on X and swaps the router of every layer ROUNDS x 4
# times (softmax-topk, sigmoid-norm epsilon 0.5, bias-balanced gamma 0,
# sigmoid-norm), recording "generation configuration" lines in $TMP/configs;
# sets swaps and swap_fail.
#   swap_under_load X LOAD_DIR ROUNDS [PAUSE_S]
record() {      # generation of layer 1 -> configuration name
	local gen
	gen=$("$MOECTL" --json router show |
		$PY -c 'import json,sys; print(json.load(sys.stdin)["layers"][0]["generation"])')
	echo "$gen $1" >>"$TMP/configs"
}

swap_under_load() {
	local x=$1 dir=$2 rounds=$3 pause=${4:-0} load args cfg
	: >"$TMP/configs"
	record sigmoid-norm
	rm -f "$TMP/stop"
	$PY "$top_srcdir/tests/integration/swapload.py" "$SOCK" "$x" 1 4 "$TMP/stop" "$dir" &
	load=$!
	swaps=0 swap_fail=0
	for _ in $(seq 1 "$rounds"); do
		for cfg in softmax-topk sigmoid-norm-eps bias-balanced-g0 sigmoid-norm; do
			case $cfg in
			softmax-topk) args="softmax-topk" ;;
			sigmoid-norm-eps) args="sigmoid-norm --param epsilon=0.5" ;;
			bias-balanced-g0) args="bias-balanced --param gamma=0 --param update_every=1" ;;
			sigmoid-norm) args="sigmoid-norm" ;;
			esac
			if "$MOECTL" router set $args >/dev/null; then
				record "$cfg"; swaps=$((swaps + 1))
			else
				swap_fail=$((swap_fail + 1))
			fi
			[ "$pause" = 0 ] || sleep "$pause"
		done
	done
	sleep 0.5
	touch "$TMP/stop"
	wait "$load"
}
