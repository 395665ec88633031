// C++ kernels of face3d.mesh; conventions and the exact coverage rule are in mesh_core.h.
// The arithmetic below is mirrored operation by operation in face3d/mesh_numpy/render.py and light.py, so keep
// the two in step: the build disables floating-point contraction (-ffp-contract=off) for the same reason.
#include "mesh_core.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <new>

namespace face3d {
namespace {

// Pixel rectangle [x0, x1] x [y0, y1] (inclusive); empty when x0 > x1 or y0 > y1.
struct Rect {
    int x0, y0, x1, y1;
    bool empty() const { return x0 > x1 || y0 > y1; }
    int width() const { return x1 - x0 + 1; }
    int height() const { return y1 - y0 + 1; }
};

// Pixel centres of [lo, hi] inside [0, size-1]: first = max(ceil(lo), 0), last = min(floor(hi), size-1), empty when
// first > last (what the numpy twin computes with np.ceil/np.floor on float32). Written with comparisons and
// truncation: ceil/floor are not inlined without SSE4.1, and this runs twice per triangle.
inline void clip_span(float lo, float hi, int size, int& first, int& last) {
    const float top = static_cast<float>(size - 1);
    if (!(hi >= 0.0f && lo <= top)) {
        first = 1;
        last = 0;
        return;
    }
    const float a = lo > 0.0f ? lo : 0.0f;  // in [0, size-1]: truncation is floor
    const float b = hi < top ? hi : top;
    const int ia = static_cast<int>(a);
    first = ia + (static_cast<float>(ia) < a);
    last = static_cast<int>(b);
}

// Checks that every vertex is finite and returns the pixels the vertices' bounding box covers: every triangle's
// clipped bounding box lies inside it, so scratch buffers need only this window.
int vertex_window(const float* v, int64_t nver, int h, int w, Rect& rect) {
    float minx = std::numeric_limits<float>::infinity(), maxx = -minx, miny = minx, maxy = -minx;
    bool finite = true;
    for (int64_t i = 0; i < nver; ++i) {
        const float x = v[3 * i], y = v[3 * i + 1], z = v[3 * i + 2];
        finite &= std::isfinite(x) & std::isfinite(y) & std::isfinite(z);
        minx = std::min(minx, x);
        maxx = std::max(maxx, x);
        miny = std::min(miny, y);
        maxy = std::max(maxy, y);
    }
    if (!finite) return kNonFiniteVertex;
    if (nver == 0) {
        rect = {1, 1, 0, 0};
        return kOk;
    }
    clip_span(minx, maxx, w, rect.x0, rect.x1);
    clip_span(miny, maxy, h, rect.y0, rect.y1);
    return kOk;
}

// Rasterises every triangle into the depth buffer of `win` (stride win.width()), calling
// visit(x, y, pixel offset in win, triangle index, w0, w1, w2) whenever a triangle wins the strict z-test.
template <class Visit>
int rasterize(const float* v, int64_t nver, const int32_t* tris, int64_t ntri, int h, int w, const Rect& win,
              float* depth, Visit&& visit) {
    const int64_t stride = win.width();
    const uint64_t n = static_cast<uint64_t>(nver);
    for (int64_t t = 0; t < ntri; ++t) {
        const int32_t* tr = tris + 3 * t;
        // One unsigned comparison also rejects negative indices.
        if (static_cast<uint64_t>(static_cast<int64_t>(tr[0])) >= n ||
            static_cast<uint64_t>(static_cast<int64_t>(tr[1])) >= n ||
            static_cast<uint64_t>(static_cast<int64_t>(tr[2])) >= n)
            return kBadVertexIndex;
        const float* a = v + 3 * static_cast<int64_t>(tr[0]);
        const float* b = v + 3 * static_cast<int64_t>(tr[1]);
        const float* c = v + 3 * static_cast<int64_t>(tr[2]);
        Rect box;
        clip_span(std::min({a[0], b[0], c[0]}), std::max({a[0], b[0], c[0]}), w, box.x0, box.x1);
        if (box.x0 > box.x1) continue;
        clip_span(std::min({a[1], b[1], c[1]}), std::max({a[1], b[1], c[1]}), h, box.y0, box.y1);
        if (box.y0 > box.y1) continue;

        const double X0 = a[0], Y0 = a[1], X1 = b[0], Y1 = b[1], X2 = c[0], Y2 = c[1];
        const double area = (X1 - X0) * (Y2 - Y0) - (Y1 - Y0) * (X2 - X0);
        if (area == 0.0) continue;
        const double s = area > 0.0 ? 1.0 : -1.0;
        const double A = s * area;
        const double dx0 = s * (X2 - X1), dy0 = s * (Y2 - Y1);
        const double dx1 = s * (X0 - X2), dy1 = s * (Y0 - Y2);
        const double dx2 = s * (X1 - X0), dy2 = s * (Y1 - Y0);
        const bool tl0 = dy0 < 0.0 || (dy0 == 0.0 && dx0 > 0.0);
        const bool tl1 = dy1 < 0.0 || (dy1 == 0.0 && dx1 > 0.0);
        const bool tl2 = dy2 < 0.0 || (dy2 == 0.0 && dx2 > 0.0);
        const double Z0 = a[2], Z1 = b[2], Z2 = c[2];

        for (int y = box.y0; y <= box.y1; ++y) {
            const double fy = y;
            const double r0 = dx0 * (fy - Y1), r1 = dx1 * (fy - Y2), r2 = dx2 * (fy - Y0);
            float* drow = depth + (y - win.y0) * stride;
            for (int x = box.x0; x <= box.x1; ++x) {
                const double fx = x;
                const double e0 = r0 - dy0 * (fx - X1);
                const double e1 = r1 - dy1 * (fx - X2);
                const double e2 = r2 - dy2 * (fx - X0);
                const bool in0 = e0 > 0.0 || (tl0 && e0 == 0.0);
                const bool in1 = e1 > 0.0 || (tl1 && e1 == 0.0);
                const bool in2 = e2 > 0.0 || (tl2 && e2 == 0.0);
                if (!(in0 && in1 && in2)) continue;
                const double w0 = e0 / A, w1 = e1 / A, w2 = e2 / A;
                const float z = static_cast<float>(w0 * Z0 + w1 * Z1 + w2 * Z2);
                if (z > drow[x - win.x0]) {
                    drow[x - win.x0] = z;
                    visit(x, y, (y - win.y0) * stride + (x - win.x0), static_cast<int32_t>(t),
                          static_cast<float>(w0), static_cast<float>(w1), static_cast<float>(w2));
                }
            }
        }
    }
    return kOk;
}

// Rasterises into a depth buffer covering only the mesh's window and calls shade(triangle, w0, w1, w2, pixel) each
// time a triangle wins a pixel of the (h, w, c) image: a later, nearer triangle simply overwrites the pixel, which
// ends with the values of the visible triangle, computed from the same float32 weights as rasterize_triangles'.
template <class Shade>
int render_window(const float* v, int64_t nver, const int32_t* tris, int64_t ntri, int h, int w, int c,
                  float* image, Shade&& shade) {
    Rect win;
    int err = vertex_window(v, nver, h, w, win);
    if (err != kOk) return err;
    const int64_t size = win.empty() ? 0 : static_cast<int64_t>(win.width()) * win.height();
    std::unique_ptr<float[]> depth(new (std::nothrow) float[size]);
    if (!depth) return kOutOfMemory;
    std::fill_n(depth.get(), size, -std::numeric_limits<float>::infinity());
    return rasterize(v, nver, tris, ntri, h, w, win, depth.get(),
                     [&](int x, int y, int64_t, int32_t t, float w0, float w1, float w2) {
                         shade(t, w0, w1, w2, image + (static_cast<int64_t>(y) * w + x) * c);
                     });
}

inline void cross_double(const float* a, const float* b, const float* c, double n[3]) {
    const double e1x = static_cast<double>(b[0]) - a[0], e1y = static_cast<double>(b[1]) - a[1],
                 e1z = static_cast<double>(b[2]) - a[2];
    const double e2x = static_cast<double>(c[0]) - a[0], e2y = static_cast<double>(c[1]) - a[1],
                 e2z = static_cast<double>(c[2]) - a[2];
    n[0] = e1y * e2z - e1z * e2y;
    n[1] = e1z * e2x - e1x * e2z;
    n[2] = e1x * e2y - e1y * e2x;
}

inline void normalize_to(const double n[3], float* out) {
    const double len = std::sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
    if (len > 0.0) {
        out[0] = static_cast<float>(n[0] / len);
        out[1] = static_cast<float>(n[1] / len);
        out[2] = static_cast<float>(n[2] / len);
    } else {
        out[0] = out[1] = out[2] = 0.0f;
    }
}

bool indices_in_range(const int32_t* idx, int64_t count, int64_t n) {
    const uint64_t un = static_cast<uint64_t>(n);
    bool ok = true;
    for (int64_t i = 0; i < count; ++i) ok &= static_cast<uint64_t>(static_cast<int64_t>(idx[i])) < un;
    return ok;
}

}  // namespace

int rasterize_triangles(const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri, int h, int w,
                        float* depth, int32_t* tri_buf, float* bary) {
    const int64_t npix = static_cast<int64_t>(h) * w;
    std::fill_n(depth, npix, -std::numeric_limits<float>::infinity());
    std::fill_n(tri_buf, npix, -1);
    std::fill_n(bary, 3 * npix, 0.0f);
    Rect win;
    int err = vertex_window(vertices, nver, h, w, win);
    if (err != kOk) return err;
    const Rect full{0, 0, w - 1, h - 1};
    return rasterize(vertices, nver, triangles, ntri, h, w, full, depth,
                     [tri_buf, bary](int, int, int64_t i, int32_t t, float w0, float w1, float w2) {
                         tri_buf[i] = t;
                         bary[3 * i] = w0;
                         bary[3 * i + 1] = w1;
                         bary[3 * i + 2] = w2;
                     });
}

int render_colors(const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri, const float* colors,
                  int c, int h, int w, float* image) {
    return render_window(vertices, nver, triangles, ntri, h, w, c, image,
                         [triangles, colors, c](int32_t t, float w0, float w1, float w2, float* out) {
                             const int32_t* tr = triangles + 3 * static_cast<int64_t>(t);
                             const float* c0 = colors + static_cast<int64_t>(tr[0]) * c;
                             const float* c1 = colors + static_cast<int64_t>(tr[1]) * c;
                             const float* c2 = colors + static_cast<int64_t>(tr[2]) * c;
                             for (int k = 0; k < c; ++k) out[k] = w0 * c0[k] + w1 * c1[k] + w2 * c2[k];
                         });
}

int render_texture(const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri,
                   const float* tex_coords, int64_t ntex, int tex_stride, const int32_t* tex_triangles,
                   const float* texture, int th, int tw, int c, bool bilinear, int h, int w, float* image) {
    if (!indices_in_range(tex_triangles, 3 * ntri, ntex)) return kBadTexIndex;
    const float umax = static_cast<float>(tw - 1), vmax = static_cast<float>(th - 1);
    return render_window(
        vertices, nver, triangles, ntri, h, w, c, image,
        [=](int32_t t, float w0, float w1, float w2, float* out) {
            const int32_t* tr = tex_triangles + 3 * static_cast<int64_t>(t);
            const float* t0 = tex_coords + static_cast<int64_t>(tr[0]) * tex_stride;
            const float* t1 = tex_coords + static_cast<int64_t>(tr[1]) * tex_stride;
            const float* t2 = tex_coords + static_cast<int64_t>(tr[2]) * tex_stride;
            float u = w0 * t0[0] + w1 * t1[0] + w2 * t2[0];
            float v = w0 * t0[1] + w1 * t1[1] + w2 * t2[1];
            // Written so that NaN (from overflowing coordinates) clamps to 0 rather than indexing anywhere.
            u = u >= 0.0f ? u : 0.0f;
            u = u <= umax ? u : umax;
            v = v >= 0.0f ? v : 0.0f;
            v = v <= vmax ? v : vmax;
            if (!bilinear) {
                const int64_t ix = static_cast<int64_t>(std::floor(u + 0.5f));
                const int64_t iy = static_cast<int64_t>(std::floor(v + 0.5f));
                const float* texel = texture + (iy * tw + ix) * c;
                for (int k = 0; k < c; ++k) out[k] = texel[k];
                return;
            }
            const float fu = std::floor(u), fv = std::floor(v);
            const int64_t x0 = static_cast<int64_t>(fu), y0 = static_cast<int64_t>(fv);
            const int64_t x1 = std::min<int64_t>(x0 + 1, tw - 1), y1 = std::min<int64_t>(y0 + 1, th - 1);
            const float a = u - fu, b = v - fv;
            const float ia = 1.0f - a, ib = 1.0f - b;
            const float* p00 = texture + (y0 * tw + x0) * c;
            const float* p01 = texture + (y0 * tw + x1) * c;
            const float* p10 = texture + (y1 * tw + x0) * c;
            const float* p11 = texture + (y1 * tw + x1) * c;
            for (int k = 0; k < c; ++k) out[k] = (p00[k] * ia + p01[k] * a) * ib + (p10[k] * ia + p11[k] * a) * b;
        });
}

namespace {

// Eight float32 lanes, loaded and stored unaligned; arithmetic is lane-wise IEEE float (no contraction).
typedef float v8 __attribute__((vector_size(32), aligned(4)));

inline v8 load8(const float* p) { return *reinterpret_cast<const v8*>(p); }
inline void store8(float* p, v8 v) { *reinterpret_cast<v8*>(p) = v; }

// One tile (kBasisTile rows) of two samples' combinations: each basis vector is loaded once for both.
inline void combine_tile_pair(const float* mean, const float* tile, int64_t nk, const float* c0, const float* c1,
                              float* out0, float* out1) {
    v8 a0 = {}, a1 = {}, a2 = {}, a3 = {}, b0 = {}, b1 = {}, b2 = {}, b3 = {};
    for (int64_t k = 0; k < nk; ++k) {
        const float* row = tile + k * kBasisTile;
        const v8 r0 = load8(row), r1 = load8(row + 8), r2 = load8(row + 16), r3 = load8(row + 24);
        a0 = a0 + r0 * c0[k];
        a1 = a1 + r1 * c0[k];
        a2 = a2 + r2 * c0[k];
        a3 = a3 + r3 * c0[k];
        b0 = b0 + r0 * c1[k];
        b1 = b1 + r1 * c1[k];
        b2 = b2 + r2 * c1[k];
        b3 = b3 + r3 * c1[k];
    }
    const v8 m0 = load8(mean), m1 = load8(mean + 8), m2 = load8(mean + 16), m3 = load8(mean + 24);
    store8(out0, m0 + a0), store8(out0 + 8, m1 + a1), store8(out0 + 16, m2 + a2), store8(out0 + 24, m3 + a3);
    store8(out1, m0 + b0), store8(out1 + 8, m1 + b1), store8(out1 + 16, m2 + b2), store8(out1 + 24, m3 + b3);
}

// One tile of one sample's combination (a batch's odd last sample, and one-sample calls).
inline void combine_tile_one(const float* mean, const float* tile, int64_t nk, const float* c, float* out) {
    v8 a0 = {}, a1 = {}, a2 = {}, a3 = {};
    for (int64_t k = 0; k < nk; ++k) {
        const float* row = tile + k * kBasisTile;
        a0 = a0 + load8(row) * c[k];
        a1 = a1 + load8(row + 8) * c[k];
        a2 = a2 + load8(row + 16) * c[k];
        a3 = a3 + load8(row + 24) * c[k];
    }
    store8(out, load8(mean) + a0), store8(out + 8, load8(mean + 8) + a1), store8(out + 16, load8(mean + 16) + a2);
    store8(out + 24, load8(mean + 24) + a3);
}

}  // namespace

__attribute__((target_clones("avx2", "default")))
int combine_basis(const float* mean, const float* tiles, int64_t ntiles, int64_t nk, const float* coef, int64_t batch,
                  float* out) {
    const int64_t m = ntiles * kBasisTile;
    // Tiles outside, samples inside: a tile (nk x 128 bytes) is read from memory once and stays in cache for the
    // batch, and memory is read in order.
    for (int64_t t = 0; t < ntiles; ++t) {
        const float* tile = tiles + t * nk * kBasisTile;
        const float* tile_mean = mean + t * kBasisTile;
        int64_t j = 0;
        for (; j + 2 <= batch; j += 2)
            combine_tile_pair(tile_mean, tile, nk, coef + j * nk, coef + (j + 1) * nk, out + j * m + t * kBasisTile,
                              out + (j + 1) * m + t * kBasisTile);
        if (j < batch) combine_tile_one(tile_mean, tile, nk, coef + j * nk, out + j * m + t * kBasisTile);
    }
    return kOk;
}

int triangle_normals(const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri, float* normals) {
    if (!indices_in_range(triangles, 3 * ntri, nver)) return kBadVertexIndex;
    for (int64_t t = 0; t < ntri; ++t) {
        const int32_t* tr = triangles + 3 * t;
        double n[3];
        cross_double(vertices + 3 * static_cast<int64_t>(tr[0]), vertices + 3 * static_cast<int64_t>(tr[1]),
                     vertices + 3 * static_cast<int64_t>(tr[2]), n);
        normalize_to(n, normals + 3 * t);
    }
    return kOk;
}

int vertex_normals(const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri, float* normals) {
    if (!indices_in_range(triangles, 3 * ntri, nver)) return kBadVertexIndex;
    std::unique_ptr<double[]> acc(new (std::nothrow) double[3 * nver]());
    if (!acc) return kOutOfMemory;
    for (int64_t t = 0; t < ntri; ++t) {
        const int32_t* tr = triangles + 3 * t;
        double n[3];
        cross_double(vertices + 3 * static_cast<int64_t>(tr[0]), vertices + 3 * static_cast<int64_t>(tr[1]),
                     vertices + 3 * static_cast<int64_t>(tr[2]), n);
        for (int k = 0; k < 3; ++k) {
            double* a = acc.get() + 3 * static_cast<int64_t>(tr[k]);
            a[0] += n[0];
            a[1] += n[1];
            a[2] += n[2];
        }
    }
    for (int64_t i = 0; i < nver; ++i) normalize_to(acc.get() + 3 * i, normals + 3 * i);
    return kOk;
}

}  // namespace face3d
