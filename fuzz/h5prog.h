/* h5prog.h — structure-aware inputs for the HDF5 readers (checkpoints, activation dumps).
 *
 * HDF5 1.10 does not defend itself against damaged bytes (a flipped bit in a heap can crash the library;
 * qalign guards against that with the whole-file checksum it writes next to every file, checked before
 * HDF5 parses anything). Mutating the file bytes would therefore fuzz HDF5, not qalign. These targets
 * mutate a PROGRAM instead, and build a well-formed HDF5 file from it through the HDF5 API: groups,
 * attributes of any type and value, datasets of any type / shape / filters / content, soft and external
 * links, external storage, correct or wrong checksums. What qalign's readers make of such a file is
 * what is fuzzed: names, types, shapes, ranges, consistency, checksums.
 *
 * Program: a sequence of ops, each one byte then its operands; str = u8 length + bytes.
 *   1 GROUP  str path
 *   2 ATTR   str object, str name, u8 kind (0 i64, 1 u64, 2 u32, 3 f64, 4 string, 5 strings: u8 n + n str,
 *            6 f32, 7 i64 array: u8 n + n x 8 bytes), value (little-endian)
 *   3 DSET   str path, u8 dtype (0 f32, 1 f64, 2 i64, 3 u64, 4 u32, 5 vlen string, 6 u16, 7 i32), u8 ndim (<= 4),
 *            ndim x u16 dims, u8 flags (bit 0 chunked, 1 fletcher32, 2 deflate, 3 add a correct crc32c attr),
 *            u32 n + n bytes of data (repeated to fill the dataset; strings: NUL-separated)
 *   4 SOFT   str path, str target
 *   5 ELINK  str path, str file, str object
 *   6 EXTERN str path (a dataset whose raw data lives in an external file)
 *   7 CHECKSUM  root attr "checksum" = qalign's file checksum over every dataset that has a crc32c attr
 */
#ifndef QA_H5PROG_H
#define QA_H5PROG_H
#include <stddef.h>
#include <stdint.h>

/* Build the file in memory; *img (free()) of *len bytes. 0, or -1 when HDF5 refused the program. */
int h5prog_build(const uint8_t *prog, size_t n, void **img, size_t *len);
/* The program that rebuilds a trusted HDF5 file (for seeds): heap *out of *n bytes. 0 or -1. */
int h5prog_emit(const char *h5path, uint8_t **out, size_t *n);
/* A fuzz input as a file on disk: the file built from the program data[1..size) written to
 * fz_dir()/name (its path in path[pathsz]), with its whole-file checksum sidecar when data[0] is odd and
 * none otherwise. 0, or -1 when the input is empty or HDF5 refused the program. */
int h5prog_write_input(const uint8_t *data, size_t size, const char *name, char *path, size_t pathsz);
#endif
