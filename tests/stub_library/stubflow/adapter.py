"""stubflow's adapter: numpy's functions under the names `stubflow.<op>`, with the hand-written
derivatives of the numpy reference backend (a library whose AD is those derivatives)."""
from nablafuzz.libraries.base import UnknownApi
from nablafuzz.libraries.numpy_ref.adapter import OPS, NumpyRefAdapter


class StubflowAdapter(NumpyRefAdapter):
    library = "stubflow"

    def versions(self):
        return dict(super().versions(), stubflow="0.1")

    def resolve(self, api):
        if not api.startswith("stubflow.") or api[len("stubflow."):] not in OPS:
            raise UnknownApi(f"stubflow has no op {api!r}")
        return OPS[api[len("stubflow."):]]


def make_adapter():
    return StubflowAdapter()
