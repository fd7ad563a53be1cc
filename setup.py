"""Builds the Cython attribution core (attribution_native/_core.pyx) and the EVM interpreter loop
(openledger_node/chain/_evm_loop.pyx); the rest is in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [
            Extension("attribution_native._core", ["attribution_native/_core.pyx"], extra_compile_args=["-O3"]),
            # The EVM interpreter loop (openledger_node/chain/vm.py): consensus code.
            Extension("openledger_node.chain._evm_loop", ["openledger_node/chain/_evm_loop.pyx"], extra_compile_args=["-O2"]),
        ],
        compiler_directives={"language_level": "3"},
    )
)
