# What the memory-bank extraction (videos_extract.py) and the end-to-end training
# (videos_tallformer.py) must share, written once. Set OWN_DATA (or edit the default):
#   $OWN_DATA/videos/        your video files (any container ffmpeg reads)
#   $OWN_DATA/annotations.json   tools/data/make_annotations.py (+ tools/data/import_csv.py)
#   $OWN_DATA/frames/        tools/data/extract_frames.py --fps 15 --short-side 128
#   $OWN_DATA/membank/       tools/data/extract_features.py --config videos_extract.py
_root = '{{$OWN_DATA:data/own_data}}'
_ann_file = _root + '/annotations.json'
_frames = _root + '/frames'
_bank = _root + '/membank/swin_t_15fps_crop112'
_fps = 15             # frame rate of the extracted frames (and of the bank)
_crop_size = 112      # frames are 128 pixels on the short side, cropped to 112
_weights = 'data/pretrained/swin_tiny_patch244_window877_kinetics400_1k.pth'
