# Real-photo recipe (issue 22), both models: a linear probe on EfficientNet-Lite2's ImageNet features at its own
# 260 px. Image model: on the real dev split it beat Lite0 at 224 px (91.0 vs 75.3 % balanced, same 3,000
# synthetic photos, same C). Cutout model: trained on true-mask cutouts, fed on real photos by the salient
# segmenter (U^2-Net-p, trained on real photos; models/u2netp.py): dev 80.3 % against Lite0's 72.3 % through the
# same masks (with a U-Net segmenter trained on synthetic photos Lite0 had led, 66.2 vs 57.1 %); test 66.7 %.
# docs/benchmarks.md, "Real photos", has the numbers.
# Measured sequence:
#   evbattery data synth --out data/real224 --n-train 3000 --n-val 300 --n-test 600 --size 256 --bias 0 --seed 1
#   evbattery data synth --out data/real224m --n-train 3000 --n-val 300 --n-test 600 --size 256 --bias 0 --seed 1 \
#       --packs prismatic=0.2          # prismatic modules: dev chose them for the cutout model, not the image model
#   evbattery train --config configs/real_photos_260.py -t images --data data/real224
#   evbattery train --config configs/real_photos_260.py -t cutouts --data data/real224m
#   evbattery train -t masks --segmenter-arch u2netp --train-layers none --image-size 224 --data data/real224m
#   evbattery evaluate --data data/real_photos --split test      # every model; cutouts via the segmenter
arch = "efficientnet_lite2"
pretrained = "auto"
train_layers = "head"
probe_c = 3e-4
image_size = 260
