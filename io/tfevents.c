/* tfevents.c — TensorBoard event files: TFRecord framing and hand-encoded Event / Summary protobufs
 * (io/tfevents.h). */
#include "io/tfevents.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"
#include "common/qa_sbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

struct qa_tb {
    FILE *f;
    char *path;
};

uint32_t qa_tb_masked_crc(const void *data, size_t len) {
    uint32_t c = qa_crc32c(0, data, len);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static double wall_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

/* ---- protobuf wire format: varints, tags, length-delimited fields ---------------------------- */
static void pb_varint(qa_sbuf *b, uint64_t v) {
    char t[10];
    size_t n = 0;
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        t[n++] = (char)(byte | (v ? 0x80 : 0));
    } while (v);
    qa_sb_put(b, t, n);
}
static void pb_key(qa_sbuf *b, unsigned field, unsigned wire) { pb_varint(b, (uint64_t)field << 3 | wire); }
static void pb_bytes(qa_sbuf *b, unsigned field, const void *p, size_t n) {
    pb_key(b, field, 2);
    pb_varint(b, n);
    if (n) qa_sb_put(b, p, n);
}
static void pb_fixed64(qa_sbuf *b, unsigned field, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    char t[8];
    for (int i = 0; i < 8; i++) t[i] = (char)(u >> (8 * i));
    pb_key(b, field, 1);
    qa_sb_put(b, t, 8);
}
static void pb_fixed32(qa_sbuf *b, unsigned field, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    char t[4];
    for (int i = 0; i < 4; i++) t[i] = (char)(u >> (8 * i));
    pb_key(b, field, 5);
    qa_sb_put(b, t, 4);
}

/* One TFRecord holding an Event {wall_time, step, <body fields already encoded>}. */
static int write_event(qa_tb *tb, int64_t step, const qa_sbuf *body, qa_err *e) {
    qa_sbuf ev = {0};
    pb_fixed64(&ev, 1, wall_now());
    pb_key(&ev, 2, 0);
    pb_varint(&ev, (uint64_t)step);
    if (body->n) qa_sb_put(&ev, body->p, body->n);
    uint8_t hdr[12];
    uint64_t len = ev.n;
    for (int i = 0; i < 8; i++) hdr[i] = (uint8_t)(len >> (8 * i));
    uint32_t hc = qa_tb_masked_crc(hdr, 8), dc = qa_tb_masked_crc(ev.p, ev.n);
    for (int i = 0; i < 4; i++) hdr[8 + i] = (uint8_t)(hc >> (8 * i));
    uint8_t tail[4];
    for (int i = 0; i < 4; i++) tail[i] = (uint8_t)(dc >> (8 * i));
    int ok = fwrite(hdr, 1, 12, tb->f) == 12 && fwrite(ev.p, 1, ev.n, tb->f) == ev.n && fwrite(tail, 1, 4, tb->f) == 4 &&
             fflush(tb->f) == 0;
    qa_sb_free(&ev);
    if (!ok) {
        int en = errno;
        return QA_ERR(e, "cannot append to the TensorBoard event file %s: %s (disk full? set log.tensorboard: false "
                         "to train without it)", tb->path, strerror(en ? en : EIO));
    }
    return 0;
}

int qa_tb_open(qa_tb **out, const char *dir, qa_err *e) {
    *out = NULL;
    QA_TRY(qa_mkdir_p(dir, e));
    char host[256] = "localhost";
    if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    for (char *c = host; *c; c++)
        if (*c == '/') *c = '_';
    struct timeval tv;
    gettimeofday(&tv, NULL);
    char name[400];
    snprintf(name, sizeof name, "events.out.tfevents.%lld.%s.%ld.qalign", (long long)tv.tv_sec, host, (long)getpid());
    qa_tb *tb = qa_calloc(1, sizeof *tb);
    tb->path = qa_path_join(dir, name);
    /* a new file of our own: an existing name (a link planted there, a file of another run) is refused,
     * never truncated or followed */
    int fd = open(tb->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    tb->f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!tb->f) {
        QA_ERRNO(e, errno, "cannot create the TensorBoard event file %s (set log.tensorboard: false to train "
                           "without it)", tb->path);
        if (fd >= 0) close(fd);
        free(tb->path);
        free(tb);
        return -1;
    }
    qa_sbuf body = {0};
    pb_bytes(&body, 3, "brain.Event:2", 13);
    int rc = write_event(tb, 0, &body, e);
    qa_sb_free(&body);
    if (rc) { qa_tb_close(tb, NULL); return -1; }
    *out = tb;
    return 0;
}

const char *qa_tb_path(const qa_tb *tb) { return tb ? tb->path : ""; }

/* Event.summary (field 5) = Summary { value (1) = <one Value> } */
static int write_value(qa_tb *tb, int64_t step, const qa_sbuf *value, qa_err *e) {
    qa_sbuf summary = {0}, body = {0};
    pb_bytes(&summary, 1, value->p, value->n);
    pb_bytes(&body, 5, summary.p, summary.n);
    int rc = write_event(tb, step, &body, e);
    qa_sb_free(&summary);
    qa_sb_free(&body);
    return rc;
}

int qa_tb_scalar(qa_tb *tb, const char *tag, int64_t step, double value, qa_err *e) {
    qa_sbuf v = {0};
    pb_bytes(&v, 1, tag, strlen(tag));
    pb_fixed32(&v, 2, (float)value);
    int rc = write_value(tb, step, &v, e);
    qa_sb_free(&v);
    return rc;
}

int qa_tb_text(qa_tb *tb, const char *tag, int64_t step, const char *text, qa_err *e) {
    qa_sbuf v = {0}, tensor = {0}, meta = {0}, plugin = {0};
    pb_bytes(&v, 1, tag, strlen(tag));
    /* TensorProto { dtype = 1: DT_STRING (7); tensor_shape = 2: {} (a scalar); string_val = 8 } */
    pb_key(&tensor, 1, 0);
    pb_varint(&tensor, 7);
    pb_bytes(&tensor, 2, "", 0);
    pb_bytes(&tensor, 8, text, strlen(text));
    pb_bytes(&v, 8, tensor.p, tensor.n);
    /* SummaryMetadata { plugin_data = 1: PluginData { plugin_name = 1: "text" } } */
    pb_bytes(&plugin, 1, "text", 4);
    pb_bytes(&meta, 1, plugin.p, plugin.n);
    pb_bytes(&v, 9, meta.p, meta.n);
    int rc = write_value(tb, step, &v, e);
    qa_sb_free(&v);
    qa_sb_free(&tensor);
    qa_sb_free(&meta);
    qa_sb_free(&plugin);
    return rc;
}

static int json_numbers(qa_tb *tb, const char *prefix, json_t *obj, int64_t step, int top, qa_err *e) {
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        if (top && !strcmp(k, "step")) continue;
        char tag[512];
        snprintf(tag, sizeof tag, "%s%s", prefix, k);
        if (json_is_number(v)) {
            QA_TRY(qa_tb_scalar(tb, tag, step, json_number_value(v), e));
        } else if (json_is_object(v)) {
            char sub[520];
            snprintf(sub, sizeof sub, "%s/", tag);
            QA_TRY(json_numbers(tb, sub, v, step, 0, e));
        }
    }
    return 0;
}

int qa_tb_json_scalars(qa_tb *tb, const char *prefix, const char *json_line, qa_err *e) {
    json_error_t je;
    json_t *root = json_loads(json_line, JSON_DECODE_ANY, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return QA_ERR(e, "TensorBoard: not a JSON object line (%s): %.80s", root ? "not an object" : je.text, json_line);
    }
    json_t *s = json_object_get(root, "step");
    int64_t step = json_is_integer(s) ? (int64_t)json_integer_value(s) : 0;
    int rc = json_numbers(tb, prefix ? prefix : "", root, step, 1, e);
    json_decref(root);
    return rc;
}

int qa_tb_close(qa_tb *tb, qa_err *e) {
    if (!tb) return 0;
    int rc = 0;
    if (tb->f && fclose(tb->f) != 0) {
        int en = errno;
        rc = QA_ERR(e, "closing the TensorBoard event file %s: %s", tb->path, strerror(en));
    }
    free(tb->path);
    free(tb);
    return rc;
}
