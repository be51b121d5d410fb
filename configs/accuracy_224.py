# Accuracy profile for the README numbers (issue 4): the 224-px finishing stage of progressive resizing.
# On this 2-core CPU a 224-px image costs ~3x a 128-px one, so most epochs run at 128 px and the last few
# at 224 px, starting from the 128-px checkpoint with a lower lr. Many distinct photos, not many epochs on
# few (scripts/data_scaling_probe.py: on 600 photos a from-scratch ResNet-18 memorises their backgrounds).
# Measured sequence (README, "Accuracy"):
#   evbattery data synth --out data/accuracy --n-train 9000 --n-val 450 --n-test 900 --size 256 --bias 0 --seed 1
#   evbattery train -t images --data data/accuracy --image-size 128 --epochs 6 --pretrained none --model-dir model/s1
#   evbattery train -t images --data data/accuracy --image-size 128 --epochs 8 --pretrained model/s1/best_model_images.pth --model-dir model/s2
#   evbattery train --config configs/accuracy_224.py -t images --data data/accuracy --pretrained model/s2/best_model_images.pth
# The cutout model follows the same pattern (128 px first, then this stage with lr 5e-4). The segmenter (U-Net)
# starts its encoder from the image model, then finishes at 224 px (measured: val IoU 0.907, then 0.927):
#   evbattery train -t masks --data data/accuracy --image-size 128 --epochs 3 --pretrained model/best_model_images.pth --model-dir model/m1
#   evbattery train -t masks --data data/accuracy --image-size 224 --epochs 2 --lr 3e-4 --pretrained model/m1/segmenter.pth
# A second path, measured on an AMX Xeon (test 91.3 %, ~50 min; README "Where the gap comes from"): the U-Net
# segmenter from scratch, then the classifier from its encoder, then 10 epochs here with lr 5e-4:
#   evbattery train -t masks --data data/accuracy --image-size 128 --epochs 3 --pretrained none --model-dir model/seg
#   evbattery train -t images --data data/accuracy --image-size 128 --epochs 5 --pretrained model/seg/segmenter.pth --model-dir model/s1
#   evbattery train --config configs/accuracy_224.py -t images --data data/accuracy --epochs 10 --lr 5e-4 --pretrained model/s1/best_model_images.pth
# A third path, the mask-attention head (README "Where the gap comes from"): 6 epochs at 128 px from scratch, then
# 4 here (this file's lr 3e-4, --epochs 4), both with --head mask_attention:
#   evbattery train -t images --data data/accuracy --image-size 128 --epochs 6 --pretrained none --head mask_attention --model-dir model/a1
#   evbattery train --config configs/accuracy_224.py -t images --data data/accuracy --epochs 4 --head mask_attention --pretrained model/a1/best_model_images.pth
image_size = 224
epochs = 2
batch_size = 32
lr = 3e-4
