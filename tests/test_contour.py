"""The jaw's landmark marching shared by the synthetic set and the fitter (face3d.morphable_model.contour)."""
import numpy as np
import pytest

from face3d.mesh.transform import angle2matrix_3ddfa
from face3d.morphable_model import MorphableModel
from face3d.morphable_model.contour import MARCHING, landmark_vertices, line_table, silhouette_vertices, yaw_3ddfa
from face3d.morphable_model.fit import LandmarkFitter


def _lines():
    """Landmark k's candidates are vertices 3k, 3k+1, 3k+2 (3k+1 its frontal vertex); landmark 5 has one only."""
    lines = [np.array([3 * k, 3 * k + 1, 3 * k + 2]) for k in range(17)]
    lines[5] = np.array([16])
    return lines


def _camera(right_depth, left_depth):
    """(51, 3) camera points: candidate 3k at x = -5 - k, 3k+1 at x = 0, 3k+2 at x = 5 + k; the frontal vertices of
    the right jaw (0-7) at z = right_depth, of the left (9-16) at z = left_depth."""
    camera = np.zeros((51, 3))
    k = np.arange(17)
    camera[3 * k, 0], camera[3 * k + 2, 0] = -5.0 - k, 5.0 + k
    camera[3 * k[:8] + 1, 2], camera[3 * k[9:] + 1, 2] = right_depth, left_depth
    return camera


def test_line_table_pads_with_the_first_candidate_and_maps_positions():
    table = line_table(_lines())
    assert table.shape == (16, 3) and table.dtype == np.int64
    np.testing.assert_array_equal(table[5], [16, 16, 16])
    np.testing.assert_array_equal(table[8], [27, 28, 29])            # row 8 is landmark 9: the chin is not a row
    ids = np.arange(100, 151)
    np.testing.assert_array_equal(line_table([line + 100 for line in _lines()], ids), table)
    lines = _lines()
    lines[12] = np.array([], dtype=np.int64)
    with pytest.raises(ValueError, match="contour line 12 is empty"):
        line_table(lines)


def test_far_side_marches_to_the_outermost_candidate_only_beyond_10_degrees():
    table = line_table(_lines())
    frontal = 3 * MARCHING + 1
    camera = np.stack([_camera(-1.0, 1.0), _camera(1.0, -1.0), _camera(-1.0, 1.0), _camera(-1.0, 1.0)])
    yaw = np.deg2rad([30.0, -30.0, 9.9, -10.1])
    chosen = silhouette_vertices(camera, table, frontal, yaw)
    right, left = MARCHING < 8, MARCHING > 8
    # Face 0: the right jaw is further from the viewer: its landmarks take their smallest x (3k; 16 for landmark 5).
    expected_right = np.where(MARCHING[right] == 5, 16, 3 * MARCHING[right])
    np.testing.assert_array_equal(chosen[0, right], expected_right)
    np.testing.assert_array_equal(chosen[0, left], frontal[left])
    # Face 1: the left jaw is far: largest x (3k + 2).
    np.testing.assert_array_equal(chosen[1, left], 3 * MARCHING[left] + 2)
    np.testing.assert_array_equal(chosen[1, right], frontal[right])
    # Under 10 degrees nothing marches; beyond, the sign of the yaw does not pick the side, the depth does.
    np.testing.assert_array_equal(chosen[2], frontal)
    np.testing.assert_array_equal(chosen[3], chosen[0])


def test_yaw_3ddfa_reads_pose_para_back():
    angles = np.array([[0.1, -0.7, 0.2], [-0.3, 1.2, -0.1]])
    np.testing.assert_allclose(yaw_3ddfa(np.stack([angle2matrix_3ddfa(a) for a in angles])), angles[:, 1],
                               atol=1e-12)


def test_fitter_marches_like_the_renderer():
    """On the default model, the fitter given the true shape and pose selects the vertices the synthetic set's
    landmarks are drawn from (landmark_vertices)."""
    mm = MorphableModel()
    fitter = LandmarkFitter(mm.model, mm.kpt_ind, mm.contour_lines)
    rng = np.random.default_rng(3)
    for pitch, yaw, roll in ((0.1, 0.6, -0.3), (-0.2, -1.1, 0.25), (0.0, 0.1, 0.3)):
        z = rng.standard_normal(len(fitter.ev))
        R = angle2matrix_3ddfa([pitch, yaw, roll])
        shape = z[:fitter.n_shape_para] * fitter.ev[:fitter.n_shape_para]
        exp = z[fitter.n_shape_para:] * fitter.ev[fitter.n_shape_para:]
        vertices = mm.generate_vertices(shape[:, None], exp[:, None]).astype(np.float64)
        expected = landmark_vertices(vertices, R, mm.kpt_ind, mm.contour_lines)
        chosen = fitter._cand[fitter._select(np.ones(1), R[None], z[None])[0]]
        np.testing.assert_array_equal(chosen, expected[MARCHING])
        assert (chosen != mm.kpt_ind[MARCHING]).any() == (abs(yaw) > np.deg2rad(10))
