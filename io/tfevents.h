/* tfevents.h — TensorBoard event files written offline (no TensorFlow, no server, no network).
 *
 * A file `events.out.tfevents.<unix time>.<host>.<pid>.qalign` in a directory holds TFRecord
 * records, each
 *     uint64 length (LE) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
 * with masked_crc32c(x) = ((crc >> 15) | (crc << 17)) + 0xa282ead8 (CRC32C, Castagnoli), and each
 * data a serialized tensorflow.Event protobuf, encoded here by hand:
 *     Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
 *     Summary { repeated Value value = 1; }
 *     Value   { string tag = 1; float simple_value = 2; TensorProto tensor = 8; SummaryMetadata metadata = 9; }
 * The first record is the file version "brain.Event:2". Scalars are simple_value (float32: what
 * TensorBoard stores); text is a DT_STRING scalar tensor with plugin_name "text" (Markdown shown as
 * rendered text, tables included). TensorBoard, tensorboard.backend.event_processing.EventAccumulator
 * and tf.data.TFRecordDataset read the files (tests/tensorboard_check.py).
 *
 * Every record is flushed to the file as it is written, so a killed run loses at most the record
 * being written; a reader ignores a truncated last record. */
#ifndef QA_TFEVENTS_H
#define QA_TFEVENTS_H
#include "common/qa_err.h"
#include <stdint.h>

typedef struct qa_tb qa_tb;

/* Create dir (mkdir -p) and a new event file in it. */
int qa_tb_open(qa_tb **tb, const char *dir, qa_err *e);
/* One scalar (stored as float32) at step. */
int qa_tb_scalar(qa_tb *tb, const char *tag, int64_t step, double value, qa_err *e);
/* One text summary (UTF-8, Markdown) at step. */
int qa_tb_text(qa_tb *tb, const char *tag, int64_t step, const char *text, qa_err *e);
/* Every number of one JSON object line (a metrics.jsonl line) as a scalar at the line's "step"
 * (an integer; 0 when absent): a top-level key k becomes tag prefix+k, a nested object
 * {"eval":{"snli":0.5}} the tag prefix+"eval/snli". Strings, booleans and null are skipped. */
int qa_tb_json_scalars(qa_tb *tb, const char *prefix, const char *json_line, qa_err *e);
/* The event file's path (for messages). */
const char *qa_tb_path(const qa_tb *tb);
/* Close (NULL is fine); an error flushing the last records is reported. */
int qa_tb_close(qa_tb *tb, qa_err *e);

/* Internals exposed for tests: the masked CRC32C of the TFRecord framing. */
uint32_t qa_tb_masked_crc(const void *data, size_t len);
#endif
