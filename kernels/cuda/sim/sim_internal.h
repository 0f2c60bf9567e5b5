/* sim_internal.h — what runtime.cpp and cublas.cpp of the CUDA simulator share (not part of any API). */
#ifndef QASIM_INTERNAL_H
#define QASIM_INTERNAL_H
#include <cuda_runtime.h>

namespace qasim {
enum { MEM_NONE = 0, MEM_DEVICE = 1, MEM_HOST_PINNED = 2 };
/* the allocation (cudaMalloc or cudaMallocHost) that contains p: its kind, start and size; MEM_NONE if none */
int find_alloc(const void *p, uintptr_t *start, size_t *size);
/* [p, p + bytes) lies inside one device allocation */
bool device_range(const void *p, size_t bytes);
/* "device allocation of N bytes at P, offset K" / "host memory" for messages */
void describe_ptr(const void *p, char *buf, size_t n);
/* an error of an API call (returned and remembered for cudaGetLastError); the sticky error wins */
cudaError_t api_error(cudaError_t e);
/* an asynchronous device fault (illegal address, failed kernel): sticky, reported by every later call; the
 * message names what failed and where (stderr) */
void device_fault(cudaError_t e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
cudaError_t sticky();
bool stream_valid(cudaStream_t s);
/* a line on stderr prefixed "qasim: " */
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* while set, a SIGSEGV/SIGBUS is reported as a fault of this library call (cuBLAS reading device memory) */
void set_fault_context(const char *what);
} // namespace qasim
#endif
