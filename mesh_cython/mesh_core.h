// C++ kernels of face3d.mesh (compiled into face3d.mesh._mesh_core through mesh_core_cython.pyx).
//
// Conventions shared by every kernel (and reproduced bit for bit by face3d/mesh_numpy):
//  * vertices: (nver, 3) float32, C order, image coordinates: x to the right, y down, the centre of pixel
//    (x, y) at integer coordinates; larger z is nearer the viewer.
//  * triangles: (ntri, 3) int32, C order, 0-based vertex indices.
//  * images: (h, w[, c]) C order, row-major.
//
// Coverage rule (documented in face3d.mesh.render.rasterize_triangles): with X_i, Y_i the vertex coordinates
// converted to double, area = (X1-X0)*(Y2-Y0) - (Y1-Y0)*(X2-X0); triangles with area == 0 are skipped; s = sign(area);
// for edge i running from vertex j = i+1 to k = i+2 (mod 3): dx = s*(Xk-Xj), dy = s*(Yk-Yj) and
// E_i(x, y) = dx*(y - Yj) - dy*(x - Xj) (double, evaluated in exactly this order). A pixel centre inside the
// triangle's bounding box [ceil(min x), floor(max x)] x [ceil(min y), floor(max y)] clipped to the image is covered
// iff every E_i > 0, or E_i == 0 on a top-left edge (dy < 0, or dy == 0 and dx > 0). Barycentric weights
// w_i = E_i / |area|; depth z = (float)((w0*Z0 + w1*Z1) + w2*Z2); the pixel takes the triangle iff z > depth so far
// (strict: among equal depths the lowest triangle index wins).
//
// Every function returns 0 on success or one of the error codes below (the outputs are then unspecified).
// None of them touches the Python interpreter, so the Cython layer calls them without the GIL; another thread may
// then change the input arrays during a call. Each kernel therefore reads every triangle index exactly once and
// checks that copy before using it, and the rasterising kernels read the vertices once into a private copy that
// sizes and bounds all their scratch buffers: a change mid-call gives wrong values or an error code, never an access
// outside a buffer.
#pragma once

#include <cstdint>

namespace face3d {

enum MeshError : int {
    kOk = 0,
    kBadVertexIndex = 1,   // a triangle index outside [0, nver)
    kNonFiniteVertex = 2,  // a vertex coordinate is NaN or infinite
    kBadTexIndex = 3,      // a tex_triangles index outside [0, ntex)
    kOutOfMemory = 4,      // a scratch buffer could not be allocated
};

// depth (h*w) float32 <- -inf / nearest z; tri_buf (h*w) int32 <- -1 / triangle index;
// bary (h*w*3) float32 <- 0 / barycentric weights of the winning triangle.
int rasterize_triangles(const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri,
                        int h, int w, float* depth, int32_t* tri_buf, float* bary);

// image (h*w*c) float32, already holding the background; covered pixels get the barycentric interpolation
// ((w0*C0 + w1*C1) + w2*C2) of the per-vertex colors (nver*c float32) of the visible triangle.
int render_colors(const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri,
                  const float* colors, int c, int h, int w, float* image);

// image (h*w*c) float32, already holding the background; covered pixels sample texture (th*tw*c float32) at the
// interpolated texture coordinates (texture pixels, x right, y down, (u, v) = ((w0*U0 + w1*U1) + w2*U2, ...)),
// clamped to [0, tw-1] x [0, th-1] (NaN -> 0); nearest: texel (floor(v + 0.5), floor(u + 0.5)); bilinear (clamp to
// edge): ((T00*(1-a) + T01*a)*(1-b) + (T10*(1-a) + T11*a)*b) with a = u - floor(u), b = v - floor(v).
// tex_coords: (ntex, tex_stride) float32, columns 0 and 1 are used; tex_triangles: (ntri, 3) int32.
int render_texture(const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri,
                   const float* tex_coords, int64_t ntex, int tex_stride, const int32_t* tex_triangles,
                   const float* texture, int th, int tw, int c, bool bilinear, int h, int w, float* image);

// Unit normals of the triangles (ntri*3 float32): cross(v1 - v0, v2 - v0) / |.| in double; (0, 0, 0) when degenerate.
int triangle_normals(const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri, float* normals);

// Unit normals of the vertices (nver*3 float32): the sum, in triangle order and in double, of the un-normalised
// cross(v1 - v0, v2 - v0) of every triangle corner at the vertex, normalised; (0, 0, 0) where that sum is zero.
int vertex_normals(const float* vertices, int64_t nver, const int32_t* triangles, int64_t ntri, float* normals);

// Linear combinations of one basis stored in tiles of kBasisTile rows: with m = ntiles * kBasisTile rows and
// B[i][k] = tiles[((i / kBasisTile) * nk + k) * kBasisTile + i % kBasisTile] (the tile of rows [t*32, t*32+32) holds
// its nk columns one after the other), out[j*m + i] = mean[i] + sum_k B[i][k] * coef[j*nk + k] for j < batch,
// evaluated for every element in exactly this order in float32 (acc = 0; acc = acc + B[i][k] * coef[j][k] for
// k = 0, 1, ...; then mean[i] + acc: the terms are summed before the large mean, as a BLAS product with beta = 1
// does), so an element never depends on the batch, its position or the instruction set.
// mean: (m,) float32; tiles: (ntiles, nk, kBasisTile) float32; coef: (batch, nk) float32; out: (batch, m) float32.
constexpr int64_t kBasisTile = 32;
int combine_basis(const float* mean, const float* tiles, int64_t ntiles, int64_t nk, const float* coef, int64_t batch,
                  float* out);

// IEEE float16 bits of n float32 values: dst[i] = the half nearest to src[i] + 0.0f (ties to even; so -0.0 gives
// +0.0), overflow to infinity, subnormal halves kept, a NaN a quiet NaN with the top 9 bits of its payload: the
// rounding of the F16C instruction vcvtps2ph, which the kernel uses where the processor has it (portable = false),
// and of numpy's astype(float16) after the + 0.0. Always returns kOk.
int float32_to_float16(const float* src, int64_t n, uint16_t* dst, bool portable);

// The 3x4 affine map matrix (row-major float32) of n points (n*3 float32), with a mask (n uint8, each 0 or 1) or not
// (mask null): out[3i+r] = fma(x, M[r][0], fma(y, M[r][1], fma(z, M[r][2], M[r][3]))) * float(mask[i]) with (x, y, z)
// point i and fma rounding once (the arithmetic of OpenCV's cv2.transform on processors with AVX2, except its last
// few points), into out32 (n*3 float32) or, when out32 is null, as float16 bits into out16 (n*3 uint16), rounded as
// float32_to_float16 rounds. Every path gives the same bits: AVX-512 or AVX2 (with FMA and F16C) where the
// processor has them, else std::fma and plain C++; max_path (kPathAvx512, kPathAvx2, kPathPortable) caps the
// choice, for the tests. Always returns kOk.
enum AffinePath : int { kPathAvx512 = 0, kPathAvx2 = 1, kPathPortable = 2 };
int affine_points(const float* points, int64_t n, const float* matrix, const uint8_t* mask, float* out32,
                  uint16_t* out16, int max_path);

}  // namespace face3d
