#!/usr/bin/env bash
# Every rate-distortion number of the README and the model card, whole files counted.
#   bash bench/rate_distortion.sh [../shared/data] [UC Merced limit, default all 210]
set -euo pipefail
DATA=${1:-../shared/data}
LIMIT=${2:-}
FOOL=${FOOL:-fool}
S2="$DATA/scenes/sentinel2_l1c_20m"
mkdir -p bench/results
$FOOL eval "$DATA/scenes/worldview3/pan_0p5m.tif" "$S2/B05.jp2" "$S2/B06.jp2" "$S2/B07.jp2" "$S2/B8A.jp2" \
  "$S2/B11.jp2" "$S2/B12.jp2" --model fool-m16 -o bench/results/rd_uint16.json
$FOOL eval "$DATA/scenes/naip/m_4709963_se_14_1_20200831.tif" -o bench/results/rd_naip.json
$FOOL eval "$DATA/ucmerced/dev" ${LIMIT:+--limit "$LIMIT"} -o bench/results/rd_ucmerced_dev.json
