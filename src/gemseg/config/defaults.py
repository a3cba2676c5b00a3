"""The defaults tree: every key a GEM config may set, with its default and meaning.

Key names follow the official stack (detectron2 → DeepLab → MaskDINO config additions) so that the official YAML
files load unchanged. The default *values* are those of GEM-Tiny at 384 (``gem_sam_tiny_bs32_iter1w_steplr.yaml``
resolved), so ``get_config(None)`` builds GEM-Tiny. Keys that only gemseg reads are marked "gemseg:".
"""
from __future__ import annotations

from yacs.config import CfgNode as CN

_C = CN()
_C.VERSION = 2
_C.OUTPUT_DIR = "./output"
_C.SEED = -1  # < 0: a random seed per run (official behaviour); >= 0: reproducible
_C.CUDNN_BENCHMARK = False

# ----------------------------------------------------------------------------------------------------------------
_C.MODEL = CN()
_C.MODEL.META_ARCHITECTURE = "MaskDINO"
_C.MODEL.DEVICE = "cpu"
_C.MODEL.WEIGHTS = ""  # checkpoint to initialise from: GEM .pth/.pkl, SAM/MobileSAM .pth, gemseg .safetensors
_C.MODEL.PIXEL_MEAN = [123.675, 116.280, 103.530]  # RGB, 0-255 scale
_C.MODEL.PIXEL_STD = [58.395, 57.120, 57.375]
_C.MODEL.MASK_ON = False
_C.MODEL.LOAD_PROPOSALS = False
_C.MODEL.KEYPOINT_ON = False

_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = "D2TinyViT"  # D2TinyViT (GEM-Tiny) | D2BaseViT (GEM-Base)
# training: gradients stop at the first parts of a pretrained encoder (EfficientNet-Lite only; detectron2 rule:
# 0 nothing, 1 stem, 2..5 everything up to the res2..res5 tap, 5 = the whole encoder; new lateral layers still train)
_C.MODEL.BACKBONE.FREEZE_AT = 0
# gemseg: backbone input size; 0 = INPUT.MIN_SIZE_TEST (the official code hard-codes 384 in the backbone)
_C.MODEL.BACKBONE.IMG_SIZE = 0
# gemseg: how SAM position embeddings / rel-pos tables made for another input size are loaded:
# "interpolate" (resize them; ours) or "drop" (keep zero init; what the official loader effectively does)
_C.MODEL.BACKBONE.POS_EMBED_POLICY = "interpolate"
_C.MODEL.BACKBONE.DROP_PATH_RATE = -1.0  # gemseg: < 0 = official value (0.1 Tiny, 0.0 Base)

_C.MODEL.RESNETS = CN()  # only read by the ResNet-50 config family (not a GEM model)
_C.MODEL.RESNETS.DEPTH = 50
_C.MODEL.RESNETS.OUT_FEATURES = ["res4"]
_C.MODEL.RESNETS.NUM_GROUPS = 1
_C.MODEL.RESNETS.NORM = "FrozenBN"
_C.MODEL.RESNETS.WIDTH_PER_GROUP = 64
_C.MODEL.RESNETS.STRIDE_IN_1X1 = True
_C.MODEL.RESNETS.RES5_DILATION = 1
_C.MODEL.RESNETS.RES2_OUT_CHANNELS = 256
_C.MODEL.RESNETS.STEM_OUT_CHANNELS = 64
_C.MODEL.RESNETS.STEM_TYPE = "basic"
_C.MODEL.RESNETS.RES5_MULTI_GRID = [1, 1, 1]
_C.MODEL.RESNETS.DEFORM_ON_PER_STAGE = [False, False, False, False]
_C.MODEL.RESNETS.DEFORM_MODULATED = False
_C.MODEL.RESNETS.DEFORM_NUM_GROUPS = 1

_C.MODEL.SWIN = CN()
_C.MODEL.SWIN.OUT_FEATURES = ["res2", "res3", "res4", "res5"]  # the SAM backbones read their outputs from here

_C.MODEL.SEM_SEG_HEAD = CN()
_C.MODEL.SEM_SEG_HEAD.NAME = "MaskDINOHead"
_C.MODEL.SEM_SEG_HEAD.IN_FEATURES = ["res2", "res3", "res4", "res5"]
_C.MODEL.SEM_SEG_HEAD.IGNORE_VALUE = 255
_C.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 2
_C.MODEL.SEM_SEG_HEAD.CONVS_DIM = 256
_C.MODEL.SEM_SEG_HEAD.COMMON_STRIDE = 4
_C.MODEL.SEM_SEG_HEAD.NORM = "GN"
_C.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT = 1.0
_C.MODEL.SEM_SEG_HEAD.MASK_DIM = 256
_C.MODEL.SEM_SEG_HEAD.PIXEL_DECODER_NAME = "MaskDINOEncoder"
_C.MODEL.SEM_SEG_HEAD.DIM_FEEDFORWARD = 1024
_C.MODEL.SEM_SEG_HEAD.NUM_FEATURE_LEVELS = 3
_C.MODEL.SEM_SEG_HEAD.TOTAL_NUM_FEATURE_LEVELS = 3
_C.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES = ["res3", "res4", "res5"]
_C.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS = 4
_C.MODEL.SEM_SEG_HEAD.DEFORMABLE_TRANSFORMER_ENCODER_N_HEADS = 8
_C.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS = 0
_C.MODEL.SEM_SEG_HEAD.FEATURE_ORDER = "high2low"
_C.MODEL.SEM_SEG_HEAD.ASPP_CHANNELS = 256  # DeepLab keys, unused by GEM
_C.MODEL.SEM_SEG_HEAD.ASPP_DILATIONS = [6, 12, 18]
_C.MODEL.SEM_SEG_HEAD.ASPP_DROPOUT = 0.1
_C.MODEL.SEM_SEG_HEAD.USE_DEPTHWISE_SEPARABLE_CONV = False
# gemseg: the older official variant's FPN step (adapter_1/layer_1) before mask_features; set automatically
# when a checkpoint has those keys
_C.MODEL.SEM_SEG_HEAD.FPN_ADAPTER = False

_C.MODEL.MaskDINO = CN()
_C.MODEL.MaskDINO.TRANSFORMER_DECODER_NAME = "MaskDINODecoder"
_C.MODEL.MaskDINO.DEEP_SUPERVISION = True
_C.MODEL.MaskDINO.NO_OBJECT_WEIGHT = 0.1
_C.MODEL.MaskDINO.CLASS_WEIGHT = 5.0
_C.MODEL.MaskDINO.DICE_WEIGHT = 5.0
_C.MODEL.MaskDINO.MASK_WEIGHT = 5.0
_C.MODEL.MaskDINO.BOX_WEIGHT = 5.0
_C.MODEL.MaskDINO.GIOU_WEIGHT = 2.0
_C.MODEL.MaskDINO.PROPOSAL_WEIGHT = 80.0  # gemseg: the official value is hard-coded
_C.MODEL.MaskDINO.COST_CLASS_WEIGHT = 4.0
_C.MODEL.MaskDINO.COST_DICE_WEIGHT = 5.0
_C.MODEL.MaskDINO.COST_MASK_WEIGHT = 5.0
_C.MODEL.MaskDINO.COST_BOX_WEIGHT = 5.0
_C.MODEL.MaskDINO.COST_GIOU_WEIGHT = 2.0
_C.MODEL.MaskDINO.NHEADS = 8
_C.MODEL.MaskDINO.DROPOUT = 0.0
_C.MODEL.MaskDINO.DIM_FEEDFORWARD = 2048
_C.MODEL.MaskDINO.ENC_LAYERS = 0
_C.MODEL.MaskDINO.DEC_LAYERS = 9
_C.MODEL.MaskDINO.INITIAL_PRED = True
_C.MODEL.MaskDINO.PRE_NORM = False
_C.MODEL.MaskDINO.BOX_LOSS = True
_C.MODEL.MaskDINO.HIDDEN_DIM = 256
_C.MODEL.MaskDINO.NUM_OBJECT_QUERIES = 100
_C.MODEL.MaskDINO.ENFORCE_INPUT_PROJ = False
_C.MODEL.MaskDINO.TWO_STAGE = False
_C.MODEL.MaskDINO.INITIALIZE_BOX_TYPE = "no"
_C.MODEL.MaskDINO.DN = "seg"
_C.MODEL.MaskDINO.DN_NOISE_SCALE = 0.4
_C.MODEL.MaskDINO.DN_NUM = 100
_C.MODEL.MaskDINO.PRED_CONV = False
_C.MODEL.MaskDINO.EVAL_FLAG = 1
_C.MODEL.MaskDINO.LEARN_TGT = False
_C.MODEL.MaskDINO.SIZE_DIVISIBILITY = 32
_C.MODEL.MaskDINO.TRAIN_NUM_POINTS = 112 * 112
_C.MODEL.MaskDINO.OVERSAMPLE_RATIO = 3.0
_C.MODEL.MaskDINO.IMPORTANCE_SAMPLE_RATIO = 0.75
_C.MODEL.MaskDINO.SEMANTIC_CE_LOSS = True
_C.MODEL.MaskDINO.PANO_BOX_LOSS = False
# gemseg: content queries from GEM's query proposal (True, official HEAD) or a learned query_feat embedding
# (False, the older variant); set automatically from a checkpoint's keys
_C.MODEL.MaskDINO.QUERY_PROPOSAL = True
# gemseg: "fixed" (proposal target = glass, ignoring padding) or "official" (NOT first-target-mask, with the
# inversion in images without background). See docs/training.md.
_C.MODEL.MaskDINO.PROPOSAL_TARGET = "fixed"
_C.MODEL.MaskDINO.TEST = CN()
_C.MODEL.MaskDINO.TEST.SEMANTIC_ON = True
_C.MODEL.MaskDINO.TEST.INSTANCE_ON = False
_C.MODEL.MaskDINO.TEST.PANOPTIC_ON = False
_C.MODEL.MaskDINO.TEST.OBJECT_MASK_THRESHOLD = 0.8
_C.MODEL.MaskDINO.TEST.OVERLAP_THRESHOLD = 0.8
_C.MODEL.MaskDINO.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE = False
_C.MODEL.MaskDINO.TEST.TEST_FOUCUS_ON_BOX = False
_C.MODEL.MaskDINO.TEST.PANO_TRANSFORM_EVAL = True
_C.MODEL.MaskDINO.TEST.PANO_TEMPERATURE = 0.06

# ----------------------------------------------------------------------------------------------------------------
_C.INPUT = CN()
_C.INPUT.MIN_SIZE_TRAIN = tuple(int(x * 0.1 * 512) for x in range(5, 21))
_C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
_C.INPUT.MAX_SIZE_TRAIN = 2048
_C.INPUT.MIN_SIZE_TEST = 384  # the square test size (GEM resizes to MIN_SIZE_TEST × MIN_SIZE_TEST)
_C.INPUT.MAX_SIZE_TEST = 384
_C.INPUT.RANDOM_FLIP = "horizontal"
_C.INPUT.FORMAT = "RGB"
_C.INPUT.MASK_FORMAT = "polygon"
_C.INPUT.DATASET_MAPPER_NAME = "mask_former_semantic"
_C.INPUT.COLOR_AUG_SSD = True
_C.INPUT.SIZE_DIVISIBILITY = 384
_C.INPUT.CROP = CN()
_C.INPUT.CROP.ENABLED = True
_C.INPUT.CROP.TYPE = "absolute"
_C.INPUT.CROP.SIZE = [384, 384]
_C.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0

_C.DATASETS = CN()
_C.DATASETS.TRAIN = ("ade20k_sem_seg_train",)
_C.DATASETS.TEST = ("ade20k_sem_seg_val",)
_C.DATASETS.PROPOSAL_FILES_TRAIN = ()
_C.DATASETS.PROPOSAL_FILES_TEST = ()
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TRAIN = 2000
_C.DATASETS.PRECOMPUTED_PROPOSAL_TOPK_TEST = 1000

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
_C.DATALOADER.ASPECT_RATIO_GROUPING = True
_C.DATALOADER.SAMPLER_TRAIN = "TrainingSampler"
_C.DATALOADER.REPEAT_THRESHOLD = 0.0
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = True

# ----------------------------------------------------------------------------------------------------------------
_C.SOLVER = CN()
_C.SOLVER.OPTIMIZER = "ADAMW"
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"
_C.SOLVER.MAX_ITER = 10000  # what the Tiny run effectively used (its file says 160000)
_C.SOLVER.BASE_LR = 2e-4
_C.SOLVER.BASE_LR_END = 0.0
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.NESTEROV = False
_C.SOLVER.WEIGHT_DECAY = 0.05
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
_C.SOLVER.WEIGHT_DECAY_EMBED = 0.0
_C.SOLVER.WEIGHT_DECAY_BIAS = -1.0  # None in detectron2; < 0 = same as WEIGHT_DECAY
_C.SOLVER.GAMMA = 0.1
_C.SOLVER.STEPS = (8438, 9375)
_C.SOLVER.WARMUP_FACTOR = 1.0
_C.SOLVER.WARMUP_ITERS = 10
_C.SOLVER.WARMUP_METHOD = "linear"
_C.SOLVER.CHECKPOINT_PERIOD = 500
_C.SOLVER.IMS_PER_BATCH = 32
_C.SOLVER.REFERENCE_WORLD_SIZE = 0
_C.SOLVER.BIAS_LR_FACTOR = 0.1  # read but ignored by the official optimizer builder; kept for compatibility
_C.SOLVER.BACKBONE_MULTIPLIER = 0.5
_C.SOLVER.POLY_LR_POWER = 0.9
_C.SOLVER.POLY_LR_CONSTANT_ENDING = 0.0
_C.SOLVER.CLIP_GRADIENTS = CN()
_C.SOLVER.CLIP_GRADIENTS.ENABLED = True
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "full_model"
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 0.01
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
_C.SOLVER.AMP = CN()
_C.SOLVER.AMP.ENABLED = False
_C.SOLVER.AMP.DTYPE = ""  # gemseg: "float16" | "bfloat16"; "" = float16 on CUDA (with GradScaler), bfloat16 elsewhere
_C.SOLVER.GRAD_ACCUM_STEPS = 1  # gemseg: micro-batches per optimizer step (emulates a larger batch)
_C.SOLVER.CHECKPOINT_KEEP_LAST = 0  # gemseg: keep the newest K periodic checkpoints (0 = all, as detectron2)
_C.SOLVER.LOG_PERIOD = 20  # gemseg: iterations between metrics.jsonl rows / console lines (detectron2: 20)
_C.SOLVER.NONFINITE_PATIENCE = 5  # gemseg: stop after this many consecutive steps with a non-finite loss/gradient
_C.SOLVER.SYNC_BN = False  # gemseg: convert BatchNorm to SyncBatchNorm under multi-process training

_C.TEST = CN()
_C.TEST.EVAL_PERIOD = 1000
_C.TEST.DETECTIONS_PER_IMAGE = 100
_C.TEST.EVAL_MAX_IMAGES = 0  # gemseg: periodic evaluation on the first N test images only (0 = all)
_C.TEST.AUG = CN()
_C.TEST.AUG.ENABLED = False
_C.TEST.AUG.MIN_SIZES = (384,)
_C.TEST.AUG.MAX_SIZE = 384
_C.TEST.AUG.FLIP = True


def get_defaults() -> CN:
    """A fresh, mutable copy of the defaults tree."""
    return _C.clone()
