"""Quick matplotlib views of a mesh (matplotlib is imported only when a function is called)."""
import numpy as np

__all__ = ["plot_mesh"]


def plot_mesh(vertices, triangles, subplot=(1, 1, 1), title="mesh", el=90, az=-90, lwdt=0.1, dist=6, color="grey",
              ax=None):
    """Draws a mesh as a 3-D triangulated surface (face3d's plot_mesh, returning the axes).

    Args:
        vertices: (nver, 3) x, y, z; triangles: (ntri, 3) 0-based vertex indices.
        subplot: (rows, cols, index) of the new axes in the current figure (ignored when ax is given).
        title: axes title; el, az: view elevation and azimuth in degrees (90, -90 looks down +z with x right, y up);
        lwdt: edge line width; dist: camera distance; color: surface colour.
        ax: an existing 3-D axes to draw into.
    Returns:
        The matplotlib 3-D axes.
    """
    import matplotlib.pyplot as plt

    v = np.asarray(vertices, dtype=np.float64)
    t = np.asarray(triangles)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (nver, 3), got {v.shape}")
    if t.ndim != 2 or t.shape[1] != 3:
        raise ValueError(f"triangles must have shape (ntri, 3), got {t.shape}")
    if ax is None:
        ax = plt.gcf().add_subplot(*subplot, projection="3d")
    ax.plot_trisurf(v[:, 0], v[:, 1], v[:, 2], triangles=t, lw=lwdt, color=color, alpha=1)
    ax.set_title(title)
    ax.view_init(elev=el, azim=az)
    ax.set_box_aspect(np.ptp(v, axis=0) + 1e-12)
    if hasattr(ax, "dist"):
        ax.dist = dist
    ax.set_axis_off()
    return ax
