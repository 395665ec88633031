// C++ kernels of face3d.mesh; conventions and the exact coverage rule are in mesh_core.h.
// The arithmetic below is mirrored operation by operation in face3d/mesh_numpy/render.py and light.py, so keep
// the two in step: the build disables floating-point contraction (-ffp-contract=off) for the same reason.
#include "mesh_core.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <new>

// On x86-64 with glibc each kernel is compiled twice, for AVX2 and for the baseline instruction set, and the loader
// picks the copy for the processor (an ifunc: musl does not resolve them, GCC rejects x86 names on ARM); elsewhere
// once, for the target's own vector unit.
#if defined(__x86_64__) && defined(__GLIBC__)
#define FACE3D_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FACE3D_CLONES
#endif
// x86-64 kernels compiled for an instruction set extension (F16C, FMA) and called where the processor has it
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FACE3D_X86_TARGETS 1
#endif

namespace face3d {
namespace {

// Pixel rectangle [x0, x1] x [y0, y1] (inclusive); empty when x0 > x1 or y0 > y1.
struct Rect {
    int x0, y0, x1, y1;
    bool empty() const { return x0 > x1 || y0 > y1; }
    int width() const { return x1 - x0 + 1; }
    int height() const { return y1 - y0 + 1; }
};

// Vectors of the rasteriser (GCC / Clang vector extensions: each target compiles them with its own instructions,
// lane by lane IEEE arithmetic, so every target gives the same bits).
typedef double v4d __attribute__((vector_size(32)));
typedef int64_t v4q __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

// One vertex as the rasteriser reads it. span = {x0, -x1, y0, -y1}, where [x0, x1] = [max(ceil(x), 0),
// min(floor(x), w-1)] are the pixel centres at and after / at and before x (likewise y): a triangle's clipped
// bounding box is then the lane-wise min of its corners' spans, exactly the float32 ceil / floor of the corners'
// min / max.
struct Corner {
    v4i span;
    float x, y, z, unused;  // unused: pads a corner to 32 bytes
};

inline v4i min4(v4i a, v4i b) { return a < b ? a : b; }

// Reads every vertex once into corners (the kernel's private copy: a thread changing the caller's vertices
// meanwhile cannot move a triangle out of the buffers sized here), checks that all are finite and returns in win
// the pixels the vertices' bounding box covers, which holds every triangle's clipped bounding box.
FACE3D_CLONES
int read_corners(const float* v, int64_t nver, int h, int w, Corner* corners, Rect& win) {
    // Lanes {x, -x, y, -y} clamped to [-1, size] / [-size, 1] (which changes no clipped bound), then ceil: x0,
    // -floor(x) = -x1, y0, -y1, clipped to the image.
    const float fw = static_cast<float>(w), fh = static_cast<float>(h);
    const v4f sign = {1.0f, -1.0f, 1.0f, -1.0f}, low = {-1.0f, -fw, -1.0f, -fh}, high = {fw, 1.0f, fh, 1.0f};
    const v4i first = {0, 1 - w, 0, 1 - h};
    v4i window = {w, 1, h, 1};
    v4i finite = {-1, -1, -1, -1};
    for (int64_t i = 0; i < nver; ++i) {
        const float x = v[3 * i], y = v[3 * i + 1], z = v[3 * i + 2];
        const v4f xyz = {x, y, z, 0.0f};
        finite &= (xyz - xyz) == 0.0f;  // NaN for a NaN or infinite coordinate
        v4f c = v4f{x, x, y, y} * sign;
        c = c > low ? c : low;
        c = c < high ? c : high;
        const v4i t = __builtin_convertvector(c, v4i);  // truncation: exact integers up to 2**24 (MAX_IMAGE_SIDE)
        const v4i ceil = t - (__builtin_convertvector(t, v4f) < c);
        const v4i span = ceil > first ? ceil : first;
        corners[i] = Corner{span, x, y, z, 0.0f};
        window = min4(window, span);
    }
    win = {window[0], window[2], -window[1], -window[3]};
    return (finite[0] & finite[1] & finite[2]) ? kOk : kNonFiniteVertex;
}

// The value at p, read exactly once (another thread may be changing it; the checked copy is then the one used).
inline int32_t read_once(const int32_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

inline bool out_of_range(int32_t i, uint64_t n) { return static_cast<uint64_t>(static_cast<int64_t>(i)) >= n; }

// Reads triangle t's three corner indices once each; false when one is outside [0, n) (negative included).
inline bool read_triangle(const int32_t* tris, int64_t t, uint64_t n, int32_t& i0, int32_t& i1, int32_t& i2) {
    i0 = read_once(tris + 3 * t), i1 = read_once(tris + 3 * t + 1), i2 = read_once(tris + 3 * t + 2);
    return !(out_of_range(i0, n) | out_of_range(i1, n) | out_of_range(i2, n));
}

// Rasterises every triangle, in order, into the depth buffer over `win` (pixel (x, y) at offset
// (y - win.y0) * stride + x - win.x0), calling visit(offset, x, y, t, i0, i1, i2, weights) whenever triangle t
// (corners i0, i1, i2) wins the strict z-test, with its float32 weights in lanes 0-2. The three edge functions of
// a pixel are evaluated at once, lane i holding edge i: the same float64 operations per lane as the scalar rule,
// so the same bits. Returns kBadVertexIndex at the first triangle with an index outside [0, nver), or the first
// status other than kOk that visit returns.
template <class Visit>
__attribute__((always_inline)) inline int rasterize(const Corner* corners, int64_t nver, const int32_t* tris,
                                                    int64_t ntri, const Rect& win, int64_t stride, float* depth,
                                                    Visit&& visit) {
    const uint64_t n = static_cast<uint64_t>(nver);
    const int64_t win_x0 = win.x0, win_y0 = win.y0;
    for (int64_t t = 0; t < ntri; ++t) {
        int32_t i0, i1, i2;
        if (!read_triangle(tris, t, n, i0, i1, i2)) return kBadVertexIndex;
        const Corner &a = corners[i0], &b = corners[i1], &c = corners[i2];
        const v4i box = min4(min4(a.span, b.span), c.span);
        const int x0 = box[0], x1 = -box[1], y0 = box[2], y1 = -box[3];
        if ((x0 > x1) | (y0 > y1)) continue;

        const double X0 = a.x, Y0 = a.y, X1 = b.x, Y1 = b.y, X2 = c.x, Y2 = c.y;
        const double area = (X1 - X0) * (Y2 - Y0) - (Y1 - Y0) * (X2 - X0);
        if (area == 0.0) continue;
        const double s = area > 0.0 ? 1.0 : -1.0;
        const double A = s * area;
        // Edge i runs from vertex j = i+1 to k = i+2: lane i of XJ is Xj, of XK is Xk.
        const v4d XJ = {X1, X2, X0, 0.0}, XK = {X2, X0, X1, 0.0}, YJ = {Y1, Y2, Y0, 0.0}, YK = {Y2, Y0, Y1, 0.0};
        const v4d DX = s * (XK - XJ), DY = s * (YK - YJ);
        const v4q top_left = (DY < 0.0) | ((DY == 0.0) & (DX > 0.0));
        const v4d Z = {static_cast<double>(a.z), static_cast<double>(b.z), static_cast<double>(c.z), 0.0};

        // The pixel rule at one pixel of the box, with E its three edge functions.
        const auto pixel = [&](int x, int y, const v4d& E) {
            const v4q inside = (E > 0.0) | (top_left & (E == 0.0));
            if (!(inside[0] & inside[1] & inside[2])) return static_cast<int>(kOk);
            const v4d W = E / A, WZ = W * Z;
            const float z = static_cast<float>(WZ[0] + WZ[1] + WZ[2]);
            const int64_t p = (y - win_y0) * stride + (x - win_x0);
            if (!(z > depth[p])) return static_cast<int>(kOk);
            depth[p] = z;
            return visit(p, x, y, static_cast<int32_t>(t), i0, i1, i2, __builtin_convertvector(W, v4f));
        };
        // Most triangles of a dense mesh have a box of one pixel: no loops for them.
        if ((x0 == x1) & (y0 == y1)) {
            const int err = pixel(x0, y0, DX * (static_cast<double>(y0) - YJ) - DY * (static_cast<double>(x0) - XJ));
            if (err != kOk) return err;
            continue;
        }
        // Most others have two (1 x 2 or 2 x 1), drawn in the loops' order without the loops' hard-to-predict exits.
        if ((x1 - x0) + (y1 - y0) == 1) {
            int err = pixel(x0, y0, DX * (static_cast<double>(y0) - YJ) - DY * (static_cast<double>(x0) - XJ));
            if (err != kOk) return err;
            err = pixel(x1, y1, DX * (static_cast<double>(y1) - YJ) - DY * (static_cast<double>(x1) - XJ));
            if (err != kOk) return err;
            continue;
        }
        for (int y = y0; y <= y1; ++y) {
            const v4d R = DX * (static_cast<double>(y) - YJ);
            for (int x = x0; x <= x1; ++x) {
                const int err = pixel(x, y, R - DY * (static_cast<double>(x) - XJ));
                if (err != kOk) return err;
            }
        }
    }
    return kOk;
}

// The rasterising kernels proper, one per way of using a pixel a triangle wins (built as FACE3D_CLONES says).

// Depth, triangle index and weights into (h, w) buffers (stride w).
FACE3D_CLONES
int rasterize_buffers(const Corner* corners, int64_t nver, const int32_t* tris, int64_t ntri, int h, int w,
                      float* depth, int32_t* tri_buf, float* bary) {
    return rasterize(corners, nver, tris, ntri, Rect{0, 0, w - 1, h - 1}, w, depth,
                     [tri_buf, bary](int64_t p, int, int, int32_t t, int32_t, int32_t, int32_t, v4f weights) {
                         tri_buf[p] = t;
                         bary[3 * p] = weights[0], bary[3 * p + 1] = weights[1], bary[3 * p + 2] = weights[2];
                         return static_cast<int>(kOk);
                     });
}

// (w0*C0 + w1*C1) + w2*C2 of the vertex colours (nver, channels) into the pixel of the (h, w, channels) image.
template <int kChannels>
__attribute__((always_inline)) inline int draw_colors(const Corner* corners, int64_t nver, const int32_t* tris,
                                                      int64_t ntri, const Rect& win, float* depth,
                                                      const float* colors, int channels, int w, float* image) {
    const int c = kChannels > 0 ? kChannels : channels;
    return rasterize(corners, nver, tris, ntri, win, win.width(), depth,
                     [=](int64_t, int x, int y, int32_t, int32_t i0, int32_t i1, int32_t i2, v4f weights) {
                         const float* c0 = colors + static_cast<int64_t>(i0) * c;
                         const float* c1 = colors + static_cast<int64_t>(i1) * c;
                         const float* c2 = colors + static_cast<int64_t>(i2) * c;
                         const float w0 = weights[0], w1 = weights[1], w2 = weights[2];
                         float* out = image + (static_cast<int64_t>(y) * w + x) * c;
                         for (int k = 0; k < c; ++k) out[k] = w0 * c0[k] + w1 * c1[k] + w2 * c2[k];
                         return static_cast<int>(kOk);
                     });
}

FACE3D_CLONES
int rasterize_colors(const Corner* corners, int64_t nver, const int32_t* tris, int64_t ntri, const Rect& win,
                     float* depth, const float* colors, int c, int w, float* image) {
    // Three channels (colours) get a copy of the loop unrolled for them.
    if (c == 3) return draw_colors<3>(corners, nver, tris, ntri, win, depth, colors, c, w, image);
    return draw_colors<0>(corners, nver, tris, ntri, win, depth, colors, c, w, image);
}

// Texture lookups (see render_texture in mesh_core.h) into the pixel of the (h, w, c) image.
FACE3D_CLONES
int rasterize_texture(const Corner* corners, int64_t nver, const int32_t* tris, int64_t ntri, const Rect& win,
                      float* depth, const float* tex_coords, int64_t ntex, int tex_stride,
                      const int32_t* tex_triangles, const float* texture, int th, int tw, int c, bool bilinear, int w,
                      float* image) {
    const float umax = static_cast<float>(tw - 1), vmax = static_cast<float>(th - 1);
    const uint64_t n = static_cast<uint64_t>(ntex);
    return rasterize(
        corners, nver, tris, ntri, win, win.width(), depth,
        [=](int64_t, int x, int y, int32_t t, int32_t, int32_t, int32_t, v4f weights) {
            int32_t j0, j1, j2;  // checked again: the caller's tex_triangles may have changed since
            if (!read_triangle(tex_triangles, t, n, j0, j1, j2)) return static_cast<int>(kBadTexIndex);
            const float* t0 = tex_coords + static_cast<int64_t>(j0) * tex_stride;
            const float* t1 = tex_coords + static_cast<int64_t>(j1) * tex_stride;
            const float* t2 = tex_coords + static_cast<int64_t>(j2) * tex_stride;
            const float w0 = weights[0], w1 = weights[1], w2 = weights[2];
            float u = w0 * t0[0] + w1 * t1[0] + w2 * t2[0];
            float v = w0 * t0[1] + w1 * t1[1] + w2 * t2[1];
            // Written so that NaN (from overflowing coordinates) clamps to 0 rather than indexing anywhere.
            u = u >= 0.0f ? u : 0.0f;
            u = u <= umax ? u : umax;
            v = v >= 0.0f ? v : 0.0f;
            v = v <= vmax ? v : vmax;
            float* out = image + (static_cast<int64_t>(y) * w + x) * c;
            // Past 2**23 texels a float32 side rounds: u + 0.5 (and past 2**24 umax itself) may round up to tw
            // (th), one past the last texel, so the indices are clamped again as integers.
            if (!bilinear) {
                const int64_t ix = std::min<int64_t>(static_cast<int64_t>(std::floor(u + 0.5f)), tw - 1);
                const int64_t iy = std::min<int64_t>(static_cast<int64_t>(std::floor(v + 0.5f)), th - 1);
                const float* texel = texture + (iy * tw + ix) * c;
                for (int k = 0; k < c; ++k) out[k] = texel[k];
                return static_cast<int>(kOk);
            }
            const float fu = std::floor(u), fv = std::floor(v);
            const int64_t x0 = std::min<int64_t>(static_cast<int64_t>(fu), tw - 1);
            const int64_t y0 = std::min<int64_t>(static_cast<int64_t>(fv), th - 1);
            const int64_t x1 = std::min<int64_t>(x0 + 1, tw - 1), y1 = std::min<int64_t>(y0 + 1, th - 1);
            const float a = u - fu, b = v - fv;
            const float ia = 1.0f - a, ib = 1.0f - b;
            const float* p00 = texture + (y0 * tw + x0) * c;
            const float* p01 = texture + (y0 * tw + x1) * c;
            const float* p10 = texture + (y1 * tw + x0) * c;
            const float* p11 = texture + (y1 * tw + x1) * c;
            for (int k = 0; k < c; ++k) out[k] = (p00[k] * ia + p01[k] * a) * ib + (p10[k] * ia + p11[k] * a) * b;
            return static_cast<int>(kOk);
        });
}

bool indices_in_range(const int32_t* idx, int64_t count, int64_t n) {
    const uint64_t un = static_cast<uint64_t>(n);
    bool ok = true;
    for (int64_t i = 0; i < count; ++i) ok &= static_cast<uint64_t>(static_cast<int64_t>(idx[i])) < un;
    return ok;
}

// Reads the vertices into a private copy and calls draw(corners, win) with the mesh's window, unless a vertex is
// not finite or the window is empty (no triangle is then drawn, but a bad index is still reported).
template <class Draw>
int with_corners(const float* v, int64_t nver, const int32_t* tris, int64_t ntri, int h, int w, Draw&& draw) {
    std::unique_ptr<Corner[]> corners(new (std::nothrow) Corner[nver]);
    if (!corners) return kOutOfMemory;
    Rect win;
    const int err = read_corners(v, nver, h, w, corners.get(), win);
    if (err != kOk) return err;
    if (win.empty()) return indices_in_range(tris, 3 * ntri, nver) ? kOk : kBadVertexIndex;
    return draw(corners.get(), win);
}

// Calls draw(corners, win, depth) with a depth buffer over the mesh's window (-inf): a renderer draws each pixel a
// triangle wins, and a later, nearer triangle simply overwrites it, so the pixel ends with the values of the
// visible triangle, from the same float32 weights as rasterize_triangles'.
template <class Draw>
int render_window(const float* v, int64_t nver, const int32_t* tris, int64_t ntri, int h, int w, Draw&& draw) {
    return with_corners(v, nver, tris, ntri, h, w, [&](const Corner* corners, const Rect& win) {
        const int64_t size = static_cast<int64_t>(win.width()) * win.height();
        std::unique_ptr<float[]> depth(new (std::nothrow) float[size]);
        if (!depth) return static_cast<int>(kOutOfMemory);
        std::fill_n(depth.get(), size, -std::numeric_limits<float>::infinity());
        return draw(corners, win, depth.get());
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

}  // namespace

int rasterize_triangles(const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri, int h, int w,
                        float* depth, int32_t* tri_buf, float* bary) {
    const int64_t npix = static_cast<int64_t>(h) * w;
    std::fill_n(depth, npix, -std::numeric_limits<float>::infinity());
    std::fill_n(tri_buf, npix, -1);
    std::fill_n(bary, 3 * npix, 0.0f);
    return with_corners(vertices, nver, triangles, ntri, h, w, [=](const Corner* corners, const Rect&) {
        return rasterize_buffers(corners, nver, triangles, ntri, h, w, depth, tri_buf, bary);
    });
}

int render_colors(const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri, const float* colors,
                  int c, int h, int w, float* image) {
    return render_window(vertices, nver, triangles, ntri, h, w,
                         [=](const Corner* corners, const Rect& win, float* depth) {
        return rasterize_colors(corners, nver, triangles, ntri, win, depth, colors, c, w, image);
    });
}

int render_texture(const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri,
                   const float* tex_coords, int64_t ntex, int tex_stride, const int32_t* tex_triangles,
                   const float* texture, int th, int tw, int c, bool bilinear, int h, int w, float* image) {
    if (!indices_in_range(tex_triangles, 3 * ntri, ntex)) return kBadTexIndex;
    return render_window(vertices, nver, triangles, ntri, h, w,
                         [=](const Corner* corners, const Rect& win, float* depth) {
        return rasterize_texture(corners, nver, triangles, ntri, win, depth, tex_coords, ntex, tex_stride,
                                 tex_triangles, texture, th, tw, c, bilinear, w, image);
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

FACE3D_CLONES
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

namespace {

// The float16 nearest to value (ties to even), as vcvtps2ph rounds it (mesh_core.h), from the bits alone.
uint16_t half_bits(float value) {
    uint32_t f;
    std::memcpy(&f, &value, sizeof f);
    const uint32_t sign = (f >> 16) & 0x8000u, magnitude = f & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x1ffu));  // NaN
    if (magnitude >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // 65520 and up, infinity: infinity
    if (magnitude >= 0x38800000u) {  // a normal half (2^-14 and up): rebias the exponent, round off 13 bits
        uint32_t h = (magnitude - 0x38000000u) >> 13;
        const uint32_t rest = magnitude & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry moves into the exponent, as it should
        return static_cast<uint16_t>(sign | h);
    }
    if (magnitude < 0x33000000u) return static_cast<uint16_t>(sign);  // below 2^-25, half the smallest subnormal
    // a subnormal half, in units of 2^-24 (or the smallest normal, reached by rounding up)
    const uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u, shift = 126u - (magnitude >> 23);
    uint32_t h = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
    if (rest > halfway || (rest == halfway && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
}

void float16_portable(const float* src, int64_t n, uint16_t* dst) {
    for (int64_t i = 0; i < n; ++i) dst[i] = half_bits(src[i] + 0.0f);
}

#ifdef FACE3D_X86_TARGETS
__attribute__((target("avx,f16c"))) void float16_f16c(const float* src, int64_t n, uint16_t* dst) {
    const __m256 zero = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_add_ps(_mm256_loadu_ps(src + i), zero);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                         _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
    for (; i < n; ++i) dst[i] = half_bits(src[i] + 0.0f);
}
#endif

}  // namespace

int float32_to_float16(const float* src, int64_t n, uint16_t* dst, bool portable) {
#ifdef FACE3D_X86_TARGETS
    if (!portable && __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c")) {
        float16_f16c(src, n, dst);
        return kOk;
    }
#endif
    float16_portable(src, n, dst);
    return kOk;
}

namespace {

// affine_points for one instruction set: each element is its own fixed expression, so however the compiler
// vectorises the loop (it does, for AVX2 and AVX-512, given the restrict pointers), the bits stay mesh_core.h's.
template <bool kMasked>
inline void affine_points_loop(const float* __restrict points, int64_t n, const float* __restrict m,
                               const uint8_t* __restrict mask, float* __restrict out) {
    const float m00 = m[0], m01 = m[1], m02 = m[2], m03 = m[3], m10 = m[4], m11 = m[5], m12 = m[6], m13 = m[7];
    const float m20 = m[8], m21 = m[9], m22 = m[10], m23 = m[11];
    for (int64_t i = 0; i < n; ++i) {
        const float x = points[3 * i], y = points[3 * i + 1], z = points[3 * i + 2];
        float u = std::fma(x, m00, std::fma(y, m01, std::fma(z, m02, m03)));
        float v = std::fma(x, m10, std::fma(y, m11, std::fma(z, m12, m13)));
        float w = std::fma(x, m20, std::fma(y, m21, std::fma(z, m22, m23)));
        if (kMasked) {  // a product with 0.0f, not a zero: -0.0 and NaN as cv2.multiply by a 0/1 mask gives
            const float keep = static_cast<float>(mask[i]);  // 0 or 1: converts in the vector unit
            u *= keep;
            v *= keep;
            w *= keep;
        }
        out[3 * i] = u;
        out[3 * i + 1] = v;
        out[3 * i + 2] = w;
    }
}

// Blocks of kHalfBlock points go through a float buffer on the stack (in the cache), then to float16.
constexpr int64_t kHalfBlock = 64;

template <class Block, class Convert>
inline void affine_points_half(const float* points, int64_t n, const float* m, const uint8_t* mask, uint16_t* out,
                               Block block, Convert convert) {
    alignas(64) float buffer[3 * kHalfBlock];
    for (int64_t i = 0; i < n; i += kHalfBlock) {
        const int64_t count = std::min(kHalfBlock, n - i);
        block(points + 3 * i, count, m, mask ? mask + i : nullptr, buffer);
        convert(buffer, 3 * count, out + 3 * i);
    }
}

// affine_points_<suffix>: the kernel compiled for target (empty: the baseline), float16 by float16_kernel.
#define FACE3D_AFFINE_POINTS_FOR(suffix, target, float16_kernel)                                                  \
    target void affine_points_float_##suffix(const float* points, int64_t n, const float* m, const uint8_t* mask, \
                                             float* out) {                                                       \
        if (mask) affine_points_loop<true>(points, n, m, mask, out);                                            \
        else affine_points_loop<false>(points, n, m, mask, out);                                                 \
    }                                                                                                            \
    target void affine_points_##suffix(const float* points, int64_t n, const float* m, const uint8_t* mask,       \
                                       float* out32, uint16_t* out16) {                                          \
        if (out32) return affine_points_float_##suffix(points, n, m, mask, out32);                              \
        affine_points_half(points, n, m, mask, out16, affine_points_float_##suffix, float16_kernel);             \
    }
FACE3D_AFFINE_POINTS_FOR(portable, , float16_portable)
#ifdef FACE3D_X86_TARGETS
FACE3D_AFFINE_POINTS_FOR(avx2, __attribute__((target("avx2,fma,f16c"))), float16_f16c)
FACE3D_AFFINE_POINTS_FOR(avx512, __attribute__((target("avx512f,avx512vl,fma,f16c"))), float16_f16c)
#endif
#undef FACE3D_AFFINE_POINTS_FOR

}  // namespace

int affine_points(const float* points, int64_t n, const float* matrix, const uint8_t* mask, float* out32,
                  uint16_t* out16, int max_path) {
#ifdef FACE3D_X86_TARGETS
    const bool fma_f16c = __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    if (max_path <= kPathAvx512 && fma_f16c && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512vl")) {
        affine_points_avx512(points, n, matrix, mask, out32, out16);
        return kOk;
    }
    if (max_path <= kPathAvx2 && fma_f16c && __builtin_cpu_supports("avx2")) {
        affine_points_avx2(points, n, matrix, mask, out32, out16);
        return kOk;
    }
#endif
    affine_points_portable(points, n, matrix, mask, out32, out16);
    return kOk;
}

int triangle_normals(const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri, float* normals) {
    for (int64_t t = 0; t < ntri; ++t) {
        int32_t i0, i1, i2;
        if (!read_triangle(triangles, t, static_cast<uint64_t>(nver), i0, i1, i2)) return kBadVertexIndex;
        double n[3];
        cross_double(vertices + 3 * static_cast<int64_t>(i0), vertices + 3 * static_cast<int64_t>(i1),
                     vertices + 3 * static_cast<int64_t>(i2), n);
        normalize_to(n, normals + 3 * t);
    }
    return kOk;
}

int vertex_normals(const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri, float* normals) {
    std::unique_ptr<double[]> acc(new (std::nothrow) double[3 * nver]());
    if (!acc) return kOutOfMemory;
    for (int64_t t = 0; t < ntri; ++t) {
        int32_t tr[3];
        if (!read_triangle(triangles, t, static_cast<uint64_t>(nver), tr[0], tr[1], tr[2])) return kBadVertexIndex;
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
