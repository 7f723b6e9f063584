#!/usr/bin/env bash
# The 22 UC Merced dev images where the learned codec loses most to JPEG 2000 (crop-row
# fields, overpasses, runways, freeways, buildings), coded with the per-tile mode decision.
# Usage: bash bench/hard_images.sh [DATA] [TILE] [MODEL]
#        (DATA defaults to ../shared/data, TILE to 128, MODEL to fool-m; results name other models)
set -euo pipefail
DATA=${1:-../shared/data}
TILE=${2:-128}
MODEL=${3:-fool-m}
SUFFIX=$([ "$MODEL" = fool-m ] && echo "" || echo "_$MODEL")
D=$DATA/ucmerced/dev
FILES=()
for i in 60 61 62 63 64 65 66 67 68 69; do FILES+=("$D/agricultural/agricultural$i.webp"); done
for c in overpass runway; do for i in 60 61 62 63; do FILES+=("$D/$c/$c$i.webp"); done; done
for c in freeway buildings; do for i in 60 61; do FILES+=("$D/$c/$c$i.webp"); done; done
fool eval "${FILES[@]}" --model "$MODEL" --codec jpeg2000 --modes auto --tile-size "$TILE" \
    -o "bench/results/rd_hard22_auto_tile$TILE$SUFFIX.json"
