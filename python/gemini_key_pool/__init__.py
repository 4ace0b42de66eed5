"""gemini_key_pool: pooled free-tier Gemini API keys from Python.

The original package's names over libgkp, the engine of gemini-key-pool:

    from gemini_key_pool import KeyPoolManager, run_gemini_task
"""

from ._lib import PoolError
from .tasks import run_gemini_task
from .key_pool_manager import KeyPoolManager, parse_rate_limit_type

__version__ = "0.3.0"

__all__ = ["KeyPoolManager", "PoolError", "parse_rate_limit_type", "run_gemini_task"]
