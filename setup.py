"""Packaging for normalizingflows (tool configuration lives in pyproject.toml)."""

from setuptools import find_packages, setup

setup(
    name="normalizingflows",
    version="0.1.0",
    description="A catalog of normalizing flows for TensorFlow Probability, trained with Keras.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["normalizingflows", "normalizingflows.*"]),
    install_requires=[
        "tensorflow>=2.16",
        "tf-keras>=2.16",
        "tensorflow-probability>=0.24",
        "numpy",
        "matplotlib",
    ],
    extras_require={
        # pandas reads the GAS pickle of the MAF archive (a pandas DataFrame).
        "uci": ["pandas"],
        "test": ["pytest>=7", "pytest-xdist", "ruff", "nbformat", "nbclient", "ipykernel",
                 "pandas"],
        # Peers timed side by side in benchmarks/speed.py (not needed by the tests).
        "bench": ["torch==2.13.0", "zuko==1.6.0", "nflows==0.14"],
    },
    entry_points={"console_scripts": ["normalizingflows=normalizingflows.cli:main"]},
)
