#!/usr/bin/env bash
# Release the newest checkpoint and regenerate every number of the model card.
#   bash bench/evaluate_release.sh [runs/fool-m] [../shared/data]
# (fool-m16, the high-bit-depth model, is released by hand: `fool release <run>/checkpoint.pt --name fool-m16`.)
# The run's log is appended to models/fool-m.train_log.csv (bench/append_log.py); append any
# earlier runs of its lineage first.
set -euo pipefail
RUN=${1:-runs/fool-m}
DATA=${2:-../shared/data}
mkdir -p bench/results
fool release "$RUN/checkpoint.pt" --name fool-m
python bench/append_log.py "$RUN" --into models/fool-m.train_log.csv
fool plot-log models/fool-m.train_log.csv -o models/fool-m.train_log.png
fool eval "$DATA/ucmerced/dev" -o bench/results/rd_ucmerced_dev.json &
fool eval "$DATA/scenes/naip/m_4709963_se_14_1_20200831.tif" -o bench/results/rd_naip.json
fool eval "$DATA/scenes/worldview3/pan_0p5m.tif" "$DATA/scenes/sentinel2_l1c_20m/B11.jp2" \
  "$DATA/scenes/sentinel2_l1c_20m/B12.jp2" --model fool-m16 --model fool-m -o bench/results/rd_uint16.json
wait
fool eval "$DATA/ucmerced/dev" --limit 42 --msssim -o bench/results/rd_ucmerced_dev_msssim.json
python bench/ablation.py --data "$DATA"
python bench/model_card.py --model fool-m --model fool-m16
