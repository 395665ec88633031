"""Normals (C++ vs numpy twin, known geometry), Phong and spherical-harmonics lighting."""
import inspect
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_mesh_render import misaligned

from face3d.mesh import light as cpp
from face3d.mesh_numpy import light as ref

ROOT = Path(__file__).resolve().parents[1]
TWINS = [pytest.param(cpp, id="cpp"), pytest.param(ref, id="numpy")]


def grid_plane(n=5, z=0.0, clockwise=True):
    """Flat n x n grid in the z = const plane (x right, y up); triangles clockwise seen from +z (BFM's order) or
    counter-clockwise."""
    ys, xs = np.mgrid[0:n, 0:n]
    v = np.stack([xs.ravel(), ys.ravel(), np.full(n * n, z)], axis=1).astype(np.float32)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    t = np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])  # counter-clockwise from +z
    return v, (t[:, ::-1] if clockwise else t).copy()


def uv_sphere(n=12):
    """Unit sphere, triangles clockwise seen from outside (BFM's order)."""
    th, ph = np.meshgrid(np.linspace(0.15, np.pi - 0.15, n), np.linspace(0, 2 * np.pi, 2 * n, endpoint=False),
                         indexing="ij")
    v = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], -1).reshape(-1, 3)
    idx = np.arange(n * 2 * n).reshape(n, 2 * n)
    nxt = np.roll(idx, -1, axis=1)
    a, b, c, d = idx[:-1].ravel(), nxt[:-1].ravel(), idx[1:].ravel(), nxt[1:].ravel()
    t = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])  # counter-clockwise from outside
    return v.astype(np.float32), t[:, ::-1].copy()


def test_twins_expose_the_same_functions():
    assert cpp.__all__ == ref.__all__
    for name in cpp.__all__:
        assert inspect.signature(getattr(cpp, name)) == inspect.signature(getattr(ref, name)), name


def test_mesh_does_not_import_its_numpy_twin():
    code = "import sys, face3d.mesh; print(any(m.startswith('face3d.mesh_numpy') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("seed", range(4))
def test_normals_match_numpy_twin(seed):
    rng = np.random.default_rng(seed)
    v = rng.uniform(-3, 3, (50, 3)).astype(np.float32)
    t = rng.integers(0, 45, (90, 3))  # vertices 45..49 belong to no triangle
    t[:4, 2] = t[:4, 0]  # degenerate
    tn, vn = cpp.triangle_normals(v, t), cpp.vertex_normals(v, t)
    assert np.array_equal(tn, ref.triangle_normals(v, t))
    assert np.array_equal(vn, ref.vertex_normals(v, t))
    assert np.all(tn[:4] == 0) and np.all(vn[45:] == 0)
    used = np.linalg.norm(vn[:45], axis=1)
    assert np.allclose(used[used > 0], 1, atol=1e-6)


@pytest.mark.parametrize("twin", TWINS)
def test_normals_of_misaligned_input_equal_those_of_aligned_input(twin):
    v, t = uv_sphere()
    t = t.astype(np.int32)
    assert np.array_equal(twin.vertex_normals(misaligned(v), misaligned(t)), twin.vertex_normals(v, t))


@pytest.mark.parametrize("twin", TWINS)
def test_normals_follow_the_right_hand_rule(twin):
    v, t = grid_plane(clockwise=False)
    assert np.allclose(twin.triangle_normals(v, t), [0, 0, 1])
    assert np.allclose(twin.vertex_normals(v, t), [0, 0, 1])
    v, t = uv_sphere()
    n = twin.vertex_normals(v, t)
    assert np.all(np.sum(n * v, axis=1) < -0.95)  # clockwise-from-outside triangles: right-hand normals point in
    assert twin.get_normal is twin.vertex_normals


@pytest.mark.parametrize("twin", TWINS)
def test_vertex_normals_weight_each_triangle_by_its_area(twin):
    """A vertex shared by a 10 x 10 right triangle in the plane z = 0 and a 1 x 1 one in the plane x = 0 gets the
    normalised sum of the two cross products, (0, 0, 100) + (1, 0, 0): the large triangle counts 100 times as much
    (averaging their unit normals would give (1, 0, 1) / sqrt(2))."""
    v = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    t = np.array([[0, 1, 2], [0, 3, 4]])
    cross_sum = np.array([0.0, 0.0, 100.0]) + np.array([1.0, 0.0, 0.0])
    # Integer inputs: the kernel's float64 cross products and sum are exact, so one rounding to float32 remains.
    expected = (cross_sum / np.sqrt(cross_sum @ cross_sum)).astype(np.float32)
    assert np.array_equal(twin.vertex_normals(v, t)[0], expected)
    assert np.allclose(expected, [0.0099995, 0, 0.99995], rtol=0, atol=1e-7)


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("leg", [1e-4, 1e-6])
def test_normals_of_a_tiny_triangle_are_unit(twin, leg):
    """Only an exactly degenerate triangle gets the zero normal: a right triangle with legs of 1e-4 or 1e-6 (cross
    product 1e-8 or 1e-12 long) counter-clockwise seen from +z has the unit normal +z, as a triangle and at each
    vertex."""
    v = np.array([[0, 0, 0], [leg, 0, 0], [0, leg, 0]], np.float32)
    t = np.array([[0, 1, 2]])
    assert np.array_equal(twin.triangle_normals(v, t), [[0, 0, 1]])
    assert np.array_equal(twin.vertex_normals(v, t), [[0, 0, 1]] * 3)


@pytest.mark.parametrize("twin", TWINS)
def test_add_light_lambert_specular_and_ambient(twin):
    v, t = grid_plane(clockwise=True)
    colors = np.full((len(v), 3), 0.5)
    light = np.array([[2.0, 2.0, 4.0]])  # above vertex 12 = (2, 2, 0)
    lit = twin.add_light(v, t, colors, light, [[1.0, 0.8, 0.6]])
    to_light = light - v
    cos = to_light[:, 2] / np.linalg.norm(to_light, axis=1)
    assert np.allclose(lit, 0.5 * cos[:, None] * [1.0, 0.8, 0.6], atol=1e-6)
    # face3d's own formula (n . (v - light), no per-light clamp) gives the same for one light in front.
    n_rh = ref.vertex_normals(v, t)
    d = v - light
    face3d = colors * np.sum(n_rh * d / np.linalg.norm(d, axis=1, keepdims=True), 1, keepdims=True) * [1, 0.8, 0.6]
    assert np.allclose(lit, np.clip(face3d, 0, 1), atol=1e-6)
    # Ambient, a second light behind the surface (ignored, clamped) and specular at the mirror point.
    lit2 = twin.add_light(v, t, colors, [[2.0, 2.0, 4.0], [0, 0, -5]], [[0.5, 0.5, 0.5], [9, 9, 9]], ambient=0.1,
                          specular=0.3, shininess=8)
    assert np.allclose(lit2[12], 0.5 * (0.1 + 0.5) + 0.3 * 0.5, atol=1e-6)
    # An eye given: V = unit(eye - vertex). At vertex 12, L = +z = n; straight in front H = n (the whole highlight),
    # at 45 degrees in the x-z plane H halves the angle to L (n.H = cos(pi/8)), behind the surface L + V = 0 (none).
    for eye, highlight in (([2, 2, 10], 1.0), ([12, 2, 10], np.cos(np.pi / 8) ** 8), ([2, 2, -10], 0.0)):
        lit3 = twin.add_light(v, t, colors, light, [0.5, 0.5, 0.5], specular=0.3, shininess=8, eye=eye)
        assert np.allclose(lit3[12], 0.5 * 0.5 + 0.3 * 0.5 * highlight, rtol=0, atol=1e-6), eye
    assert np.all(twin.add_light(v, t, colors, light, [10, 10, 10]) <= 1)
    flipped = twin.add_light(v, t, colors, light, [1, 1, 1], clockwise=False)
    assert np.all(flipped == 0)  # the light is behind the surface for the opposite winding


def test_add_light_cpp_matches_numpy():
    v, t = uv_sphere()
    colors = np.random.default_rng(0).uniform(0, 1, (len(v), 3))
    args = (v, t, colors, [[2, 1, 3], [-3, 0, 1]], [[0.7, 0.6, 0.5], [0.3, 0.3, 0.4]])
    kw = dict(ambient=[0.1, 0.1, 0.2], specular=0.2, shininess=5, eye=[0, 0, 10])
    assert np.array_equal(cpp.add_light(*args, **kw), ref.add_light(*args, **kw))


def test_sh_basis_values():
    c0, c1 = 0.5 / np.sqrt(np.pi), np.sqrt(3 / (4 * np.pi))
    b = ref.sh_basis([[0, 0, 1], [1, 0, 0]])
    assert np.allclose(b[0], [c0, 0, c1, 0, 0, 0, 2 * np.sqrt(5 / (16 * np.pi)), 0, 0])
    assert np.allclose(b[1], [c0, 0, 0, c1, 0, 0, -np.sqrt(5 / (16 * np.pi)), 0, np.sqrt(15 / (16 * np.pi))])
    # Orthonormal on the sphere: a fine quadrature of Y_i Y_j gives the identity.
    th, ph = np.meshgrid(np.linspace(0, np.pi, 400), np.linspace(0, 2 * np.pi, 800, endpoint=False), indexing="ij")
    n = np.stack([np.sin(th) * np.cos(ph), np.sin(th) * np.sin(ph), np.cos(th)], -1).reshape(-1, 3)
    w = (np.sin(th) * (np.pi / 399) * (2 * np.pi / 800)).ravel()
    y = ref.sh_basis(n)
    assert np.allclose((y * w[:, None]).T @ y, np.eye(9), atol=1e-2)


@pytest.mark.parametrize("twin", TWINS)
def test_sh_light_round_trip(twin):
    v, t = uv_sphere()
    rng = np.random.default_rng(2)
    albedo = rng.uniform(0.2, 1, (len(v), 3))
    coeff = rng.normal(0, 1, (9, 3))
    lit = twin.add_light_sh(v, t, albedo, coeff)
    outward = -ref.vertex_normals(v, t)
    assert np.allclose(lit, albedo * (ref.sh_basis(outward) @ coeff), atol=1e-5)
    assert np.allclose(twin.estimate_light(v, t, albedo, lit), coeff, atol=1e-3)
    visible = np.flatnonzero(v[:, 2] > -0.3)
    assert np.allclose(twin.estimate_light(v, t, albedo, lit, vertex_ind=visible), coeff, atol=1e-3)
    shared = twin.add_light_sh(v, t, albedo, coeff[:, 0])
    assert np.allclose(shared[:, 1], albedo[:, 1] * (ref.sh_basis(outward) @ coeff[:, 0]), atol=1e-5)


@pytest.mark.parametrize("twin", TWINS)
def test_estimate_light_with_lamb_minimises_the_ridge_objective(twin):
    """estimate_light minimises sum_i (albedo_ik sh_basis(n_i).L - observed_ik)^2 + lamb |L|^2 per channel: at its
    result the gradient A^T (A L - observed) + lamb L (A: the albedo-weighted basis rows) vanishes. Observations
    that no lighting explains exactly keep the residual, and so the check, non-trivial."""
    v, t = uv_sphere()
    rng = np.random.default_rng(3)
    # float32 values (estimate_light reads colours as float32): the gradient below sees the same numbers
    albedo = rng.uniform(0.2, 1, (len(v), 3)).astype(np.float32).astype(np.float64)
    observed = rng.uniform(0, 1, (len(v), 3)).astype(np.float32).astype(np.float64)
    lamb = 3.0
    coeff = twin.estimate_light(v, t, albedo, observed, lamb=lamb)
    basis = ref.sh_basis(-ref.vertex_normals(v, t))  # outward normals
    for k in range(3):
        a = albedo[:, k:k + 1] * basis
        gradient = a.T @ (a @ coeff[:, k] - observed[:, k]) + lamb * coeff[:, k]
        # a 9 x 9 solve in float64: the gradient is zero up to rounding of terms of size |A^T observed|
        assert np.abs(gradient).max() <= 1e-12 * np.abs(a.T @ observed[:, k]).max()


@pytest.mark.parametrize("twin", TWINS)
def test_light_bad_input(twin):
    v, t = grid_plane()
    with pytest.raises(ValueError, match=r"^triangles must hold indices"):
        twin.vertex_normals(v, t + 100)
    with pytest.raises(ValueError, match=r"^vertices must be finite"):
        twin.triangle_normals(np.where(np.arange(len(v))[:, None] == 3, np.nan, v), t)
    with pytest.raises(ValueError, match=r"^light_intensities must have one row per light"):
        twin.add_light(v, t, np.ones((len(v), 3)), [[0, 0, 1], [0, 1, 1]], [[1, 1, 1]] * 3)
    with pytest.raises(ValueError, match=r"^colors must have one row per vertex"):
        twin.add_light(v, t, np.ones((3, 3)), [0, 0, 1], [1, 1, 1])
    with pytest.raises(ValueError, match=r"^sh_coeff must have shape"):
        twin.add_light_sh(v, t, np.ones((len(v), 3)), np.ones(4))


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("options, match", [
    (dict(colors=np.full((25, 3), np.nan)), r"colors must be finite, found NaN or inf"),
    (dict(ambient=np.nan), r"ambient must be a finite scalar or \(3,\) RGB, got nan"),
    (dict(ambient=[0.1, 0.2]), r"ambient must be a finite scalar or \(3,\) RGB, got \[0\.1, 0\.2\]"),
    (dict(specular=np.inf), r"specular must be a finite scalar, got inf"),
    (dict(specular=0.5, shininess=np.nan), r"shininess must be a finite scalar >= 0, got nan"),
    (dict(specular=0.5, shininess=-1), r"shininess must be a finite scalar >= 0, got -1"),
    (dict(specular=0.5, eye=[np.nan, 0, 1]), r"eye must be None or a finite \(3,\) point, got \[nan, 0\.0, 1\.0\]"),
    (dict(eye=[0, 1]), r"eye must be None or a finite \(3,\) point, got \[0, 1\]"),
], ids=["NaN colors", "NaN ambient", "ambient (2,)", "inf specular", "NaN shininess", "negative shininess", "NaN eye",
        "eye (2,)"])
def test_add_light_names_a_non_finite_or_misshaped_parameter(twin, options, match):
    v, t = grid_plane()
    args = {"colors": np.ones((len(v), 3)), "light_positions": [0, 0, 5], "light_intensities": [1, 1, 1], **options}
    with pytest.raises(ValueError, match=rf"^{match}$"):
        twin.add_light(v, t, **args)


@pytest.mark.parametrize("twin", TWINS)
@pytest.mark.parametrize("call, match", [
    (lambda twin, v, t, c: twin.add_light_sh(v, t, c * np.nan, np.ones(9)), r"colors must be finite, found NaN or inf"),
    (lambda twin, v, t, c: twin.add_light_sh(v, t, c, np.full(9, np.inf)),
     r"sh_coeff must be finite, found NaN or inf"),
    (lambda twin, v, t, c: twin.add_light_sh(v, t, c, "abc"), r"sh_coeff must hold real numbers, got dtype <U3"),
    (lambda twin, v, t, c: twin.estimate_light(v, t, c * np.nan, c), r"albedo must be finite, found NaN or inf"),
    (lambda twin, v, t, c: twin.estimate_light(v, t, c, c * np.nan), r"observed must be finite, found NaN or inf"),
    (lambda twin, v, t, c: twin.estimate_light(v, t, c, c, lamb=-1), r"lamb must be a finite scalar >= 0, got -1"),
    (lambda twin, v, t, c: twin.estimate_light(v, t, c, c, vertex_ind=[1, 2, 3]),
     r"vertex_ind must select at least 9 vertices when lamb is 0 \(9 coefficients per channel\), got 3; select more "
     r"or pass lamb > 0"),
    (lambda twin, v, t, c: twin.estimate_light(v[:5], t[:0], c[:5], c[:5]),
     r"the mesh must have at least 9 vertices when lamb is 0 \(9 coefficients per channel\), got 5; use more or "
     r"pass lamb > 0"),
    (lambda twin, v, t, c: twin.estimate_light(v, t, c * 0, c),
     r"the normals and albedo \(channel 0\) at the vertices do not determine the 9 coefficients \(a singular "
     r"system\): select vertices with more varied normals and non-zero albedo, or pass a larger lamb"),
    (lambda twin, v, t, c: twin.estimate_light(v, t, c * 0, c, vertex_ind=np.arange(20)),
     r"the normals and albedo \(channel 0\) at the vertices of vertex_ind do not determine the 9 coefficients \(a "
     r"singular system\): select vertices with more varied normals and non-zero albedo, or pass a larger lamb"),
], ids=["NaN colors", "inf sh_coeff", "str sh_coeff", "NaN albedo", "NaN observed", "negative lamb", "3 vertices",
        "5-vertex mesh", "zero albedo", "zero albedo at vertex_ind"])
def test_sh_lighting_names_a_non_finite_or_unusable_argument(twin, call, match):
    v, t = uv_sphere()
    with pytest.raises(ValueError, match=rf"^{match}$"):
        call(twin, v, t, np.ones((len(v), 3)))
