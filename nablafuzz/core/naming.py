"""What an API's name says about it, shared by every spec source.  Worker-safe.

SELECTION: ops that pick elements (sort, median, max, ...): at ties their derivative is a
library convention, judged by the kink filter's `selection` policy.
"""
from __future__ import annotations

import re

SELECTION = re.compile(r"median|quantile|percentile|sort|topk|top_k|kthvalue|mode|^max|^min|amax|amin|nanmax|nanmin"
                       r"|cummax|cummin|max_pool|maximum|minimum|fmax|fmin|clamp|clip|aminmax|unpool|ptp"
                       r"|reduce_max|reduce_min|argsort|partition|segment_max|segment_min")


def short_name(api: str) -> str:
    """`jax.numpy.linalg.solve` -> `solve` (what the patterns above look at)."""
    return api.rsplit(".", 1)[-1]
