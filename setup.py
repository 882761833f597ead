"""Build the Cython mixing kernel; everything else is in pyproject.toml."""

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

# -O3 lets GCC vectorise the inner loops (baseline SSE2 on x86-64, NEON on aarch64); no -march,
# so the wheel runs on any x86-64 / aarch64. The kernel never reads errno or floating-point
# traps, so libm calls and float compares may be vectorised too.
kernel = Extension(
    "mcu._mix",
    ["mcu/_mix.pyx"],
    depends=["mcu/_simd.h"],
    include_dirs=[numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=["-O3", "-fno-math-errno", "-fno-trapping-math"],
)

setup(
    ext_modules=cythonize(
        [kernel],
        compiler_directives={"language_level": "3", "embedsignature": True},
    )
)
