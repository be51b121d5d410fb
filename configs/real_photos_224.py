# Real-photo recipe (issue 22): a linear probe on EfficientNet-Lite0's ImageNet features at 224 px, for the
# cutout model (-t cutouts; the image model uses configs/real_photos_260.py, Lite2, which did better on dev).
# Fine-tuning the same backbone on synthetic photos reached 97 % on them but 43 % on real photos; the frozen
# ImageNet features with a linear head keep what real photos need (docs/benchmarks.md, "Real photos").
# probe_c was chosen on the real dev split. The probe trains on true-mask cutouts; on real photos its masks come
# from the salient segmenter (U^2-Net-p, trained on real photos; models/u2netp.py). Dev chose that pair (72.3 %)
# over a U-Net segmenter trained on synthetic photos with this probe trained on its cutouts too (68.0 %); test
# 54.0 -> 59.5 % (docs/benchmarks.md, "A segmenter that has seen real photos").
# Measured sequence (docs/benchmarks.md):
#   evbattery data synth --out data/real224 --n-train 3000 --n-val 300 --n-test 600 --size 256 --bias 0 --seed 1
#   evbattery data synth --out data/real224m --n-train 3000 --n-val 300 --n-test 600 --size 256 --bias 0 --seed 1 \
#       --packs prismatic=0.2          # prismatic modules: dev chose them for the cutout model, not the image model
#   evbattery train --config configs/real_photos_260.py -t images --data data/real224
#   evbattery train -t masks --segmenter-arch u2netp --train-layers none --image-size 224 --data data/real224m
#   evbattery train --config configs/real_photos_224.py -t cutouts --data data/real224m
#   evbattery evaluate --data data/real_photos --split test      # every model; cutouts via the segmenter
arch = "efficientnet_lite0"
pretrained = "auto"
train_layers = "head"
probe_c = 3e-4
image_size = 224
cutout_masks = "true"
