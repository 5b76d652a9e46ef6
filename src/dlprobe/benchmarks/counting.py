"""Counting the Hessian-vector products a computation makes, ours and PyHessian's, so
that the curvature bench compares methods at equal numbers of products."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from dlprobe.measure._functional import HessianOperator


def counting_products(fn: Callable[[], object]) -> Callable[[], tuple[object, int]]:
    """``fn`` returning ``(result, Hessian-vector products it made)``."""

    def counted():
        count = 0
        original = HessianOperator.__matmul__

        def matmul(self, v):
            nonlocal count
            count += 1 if v.ndim == 1 else v.shape[1]
            return original(self, v)

        HessianOperator.__matmul__ = matmul
        try:
            return fn(), count
        finally:
            HessianOperator.__matmul__ = original

    return counted


def counting_pyhessian_products(fn: Callable[[], object]) -> Callable[[], tuple[object, int]]:
    """The same for PyHessian (its module-level ``hessian_vector_product``); a
    ``RuntimeError`` from PyHessian is returned as the result instead of raised."""

    def counted():
        # the module, not the class of the same name that pyhessian/__init__ exports
        module = importlib.import_module("pyhessian.hessian")
        count = 0
        original = module.hessian_vector_product

        def product(*args, **kwargs):
            nonlocal count
            count += 1
            return original(*args, **kwargs)

        module.hessian_vector_product = product
        try:
            return fn(), count
        except RuntimeError as error:  # its density calls torch.eig, gone since torch 1.9
            return error, count
        finally:
            module.hessian_vector_product = original

    return counted
