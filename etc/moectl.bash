# bash completion for moectl(1)
_moectl()
{
	local cur prev words cword
	_init_completion || return
	local commands="status plugins model infer route router expert stats bias reload metrics bench cluster"
	local i cmd=
	for ((i = 1; i < cword; i++)); do
		case ${words[i]} in
		-s|--socket|-t|--timeout) ((i++)) ;;
		-*) ;;
		*) cmd=${words[i]}; break ;;
		esac
	done
	case $prev in
	-s|--socket) _filedir; return ;;
	--input|--output) _filedir npy; return ;;
	--dtype) COMPREPLY=($(compgen -W "f32 bf16" -- "$cur")); return ;;
	--layer|--random|--seed|--watch|-t|--timeout|--param|--clients|--tokens|--duration|--sample) return ;;
	esac
	if [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W "$commands --socket --json --timeout --help --version" -- "$cur"))
		return
	fi
	local opts="--json --help"
	case $cmd in
	infer) opts+=" --layer --input --random --seed --output --dtype" ;;
	route) opts+=" --layer --input --random --seed --dtype" ;;
	router) opts+=" set show shadow --param --layer --sample --off softmax-topk sigmoid-norm bias-balanced" ;;
	expert) opts+=" set --param --layer cpu cuda" ;;
	stats) opts+=" --layer --watch" ;;
	bias) opts+=" show reset freeze thaw --layer" ;;
	reload) opts+=" --wait" ;;
	metrics) opts+=" --openmetrics" ;;
	bench) opts+=" --clients --tokens --duration --layer --compare --dtype --output" ;;
	cluster) opts+=" show rebalance" ;;
	esac
	COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -F _moectl moectl
