#!/usr/bin/env bash
# Put the weights that came back from the H200 run into models/testbed/.
#   scripts/testbed/fetch_weights.sh DIR     (DIR = the run's files, e.g. /work/.device/N)
# DIR holds config.json, generation_config.json, model.safetensors.part0..N and eval.json (whose
# train.sha256 is the sha256 of the whole model.safetensors).
set -euo pipefail
D=${1:?usage: fetch_weights.sh DIR}
M=models/testbed
cat $(ls "$D"/model.safetensors.part* | sort -V) > "$M/model.safetensors"
cp "$D/config.json" "$D/generation_config.json" "$M/"
want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["train"]["sha256"])' "$D/eval.json")
got=$(sha256sum "$M/model.safetensors" | cut -d' ' -f1)
[ "$want" = "$got" ] || { echo "sha256 mismatch: $got != $want" >&2; exit 1; }
echo "ok: $M/model.safetensors ($got)"; du -sh "$M"
