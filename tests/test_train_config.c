/* test_train_config.c — io/yaml_config + train/train_config: defaults, YAML loading, --set
 * precedence, list parsing, unknown keys with suggestions, type/range/choice errors, dumps that
 * load back unchanged. */
#include "testutil.h"

#include "common/qa_file.h"
#include "io/yaml_config.h"
#include "train/train_config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];

static char *write_tmp(const char *name, const char *text) {
    char *p = qa_path_join(tmpdir, name);
    qa_err e = {0};
    if (qa_write_file_atomic(p, text, strlen(text), &e)) { qa_err_print(&e); exit(1); }
    return p;
}

/* load text as a config file; returns rc and leaves the message in e */
static int load(qa_train_config *tc, const char *name, const char *text, qa_err *e) {
    char *p = write_tmp(name, text);
    memset(e, 0, sizeof *e);
    int rc = qa_train_config_load(tc, p, e);
    free(p);
    return rc;
}

static int contains(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

static void test_defaults(void) {
    qa_train_config tc;
    qa_train_config_init(&tc);
    QT_CHECK(tc.lora.r == 8 && tc.lora.alpha == 16 && tc.lora.dropout == 0, "lora defaults r=8 alpha=16 dropout=0");
    QT_CHECK(tc.lora.targets.n == 2 && !strcmp(tc.lora.targets.v[0], "q_proj") && !strcmp(tc.lora.targets.v[1], "v_proj"),
             "lora.targets default q_proj,v_proj");
    QT_CHECK(tc.train.lr == 5e-5 && tc.train.epochs == 3 && tc.train.micro_batch == 4 && tc.train.grad_accum == 4,
             "lr 5e-5, 3 epochs, 4x4");
    QT_CHECK(tc.train.warmup_ratio == 0.1 && !strcmp(tc.train.schedule, "cosine") && tc.train.max_grad_norm == 1.0 &&
             tc.train.weight_decay == 0 && tc.train.seed == 42, "warmup 10%%, cosine, clip 1, wd 0, seed 42");
    QT_CHECK(tc.data.val_fraction == 0.05 && tc.train.eval_every == 50 && tc.data.cutoff == 2048 && tc.data.packing == 1,
             "val 5%%, eval every 50, cutoff 2048, packing on");
    QT_CHECK(!strcmp(qa_cfg_origin(&tc.cfg, "train.lr"), "default"), "origin of an untouched key is 'default'");
    qa_train_config_free(&tc);
}

static void test_yaml_and_set(void) {
    qa_train_config tc;
    qa_err e;
    qa_train_config_init(&tc);
    const char *y =
        "# a run\n"
        "model:\n"
        "  path: demo/model\n"
        "  device: cuda\n"
        "data:\n"
        "  files:\n"
        "    - a.json\n"
        "    - \"b c.json\"\n"
        "  cutoff: 256\n"
        "  packing: no\n"
        "train.lr: 1e-4\n"          /* dotted key at the top level */
        "train:\n"
        "  epochs: 1\n"
        "lora: {targets: [q_proj, k_proj, v_proj], alpha: 32}\n";
    int rc = load(&tc, "a.yaml", y, &e);
    QT_CHECK(rc == 0, "nested + dotted + flow YAML loads (%s)", e.msg);
    QT_CHECK(!strcmp(tc.model.path, "demo/model") && !strcmp(tc.model.device, "cuda"), "strings");
    QT_CHECK(tc.data.files.n == 2 && !strcmp(tc.data.files.v[1], "b c.json"), "block sequence list");
    QT_CHECK(tc.data.cutoff == 256 && tc.data.packing == 0, "int and bool (no)");
    QT_CHECK(tc.train.lr == 1e-4 && tc.train.epochs == 1, "dotted top-level key and nested key");
    QT_CHECK(tc.lora.targets.n == 3 && !strcmp(tc.lora.targets.v[2], "v_proj") && tc.lora.alpha == 32,
             "flow mapping with flow sequence; int text for a float key");
    QT_CHECK(contains(qa_cfg_origin(&tc.cfg, "data.cutoff"), "a.yaml (line 9)"), "origin names file and line: %s",
             qa_cfg_origin(&tc.cfg, "data.cutoff"));

    /* --set wins over the file, later --set wins over earlier */
    memset(&e, 0, sizeof e);
    QT_CHECK(qa_train_config_set(&tc, "train.lr=2e-4", &e) == 0, "--set train.lr (%s)", e.msg);
    QT_CHECK(qa_train_config_set(&tc, "train.lr=3e-4", &e) == 0, "--set train.lr again");
    QT_CHECK(tc.train.lr == 3e-4 && !strcmp(qa_cfg_origin(&tc.cfg, "train.lr"), "--set"), "last --set wins");
    QT_CHECK(qa_train_config_set(&tc, "lora.targets=q_proj,o_proj", &e) == 0 && tc.lora.targets.n == 2 &&
             !strcmp(tc.lora.targets.v[1], "o_proj"), "--set list comma-separated");
    QT_CHECK(qa_train_config_set(&tc, "lora.targets=[ 'v_proj' , \"up_proj\" ]", &e) == 0 && tc.lora.targets.n == 2 &&
             !strcmp(tc.lora.targets.v[0], "v_proj") && !strcmp(tc.lora.targets.v[1], "up_proj"),
             "--set list in flow syntax with quotes");
    QT_CHECK(qa_train_config_set(&tc, "data.files=[]", &e) == 0 && tc.data.files.n == 0, "--set empty list");
    QT_CHECK(qa_train_config_set(&tc, " data.packing = on ", &e) == 0 && tc.data.packing == 1, "--set bool with spaces");
    /* a second file overrides the first */
    rc = load(&tc, "b.yaml", "train: {epochs: 7}\n", &e);
    QT_CHECK(rc == 0 && tc.train.epochs == 7 && tc.train.lr == 3e-4, "a second file overrides only its keys");
    qa_train_config_free(&tc);
}

static void test_errors(void) {
    qa_train_config tc;
    qa_err e;
    qa_train_config_init(&tc);
    int rc = load(&tc, "u.yaml", "model:\n  path: x\ntrain:\n  lrr: 1e-4\n", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "unknown key 'train.lrr' in ") && contains(e.msg, "u.yaml (line 4); did you mean 'train.lr'?"),
             "unknown key with suggestion: %s", e.msg);
    rc = load(&tc, "u2.yaml", "lr: 1e-4\n", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "did you mean 'train.lr'?"), "bare leaf name suggests the dotted key: %s", e.msg);
    rc = load(&tc, "u3.yaml", "zzzzzzzzzzzz: 1\n", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "unknown key 'zzzzzzzzzzzz'") && !contains(e.msg, "did you mean"),
             "no far-fetched suggestion: %s", e.msg);
    rc = load(&tc, "t.yaml", "train:\n  epochs: three\n", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "key 'train.epochs' in ") && contains(e.msg, "t.yaml (line 2) expects an int, got 'three'"),
             "type error names key, file, line: %s", e.msg);
    rc = load(&tc, "t2.yaml", "train:\n  lr: [1, 2]\n", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "'train.lr'") && contains(e.msg, "expects a float, got a list"), "list for a float: %s", e.msg);
    rc = load(&tc, "t3.yaml", "data:\n  packing: maybe\n", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "expects a bool"), "bad bool: %s", e.msg);
    rc = load(&tc, "t4.yaml", "model:\n  device: gpu\n", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "must be one of auto|cpu|cuda|cuda-fp32|emu, got 'gpu'"), "choice error: %s", e.msg);
    rc = load(&tc, "t5.yaml", "data:\n  val_fraction: 1.0\n", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "'data.val_fraction'") && contains(e.msg, "must be in [0,1)"), "range error: %s", e.msg);
    rc = load(&tc, "t6.yaml", "lora:\n  targets: [q_proj, qq_proj]\n", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "item 'qq_proj' is not one of"), "list item choice: %s", e.msg);
    rc = load(&tc, "t7.yaml", "train:\n  lr: 1e-4\n  lr: 2e-4\n", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "appears twice") && contains(e.msg, "lines 2 and 3"), "duplicate key: %s", e.msg);
    rc = load(&tc, "t8.yaml", "train: 5\n", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "'train'") && contains(e.msg, "is a section"), "section given a scalar: %s", e.msg);
    rc = load(&tc, "t9.yaml", "train:\n  lr: 1e-4\n   bad indent: [\n", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "YAML syntax error") && contains(e.msg, "t9.yaml (line"), "syntax error with line: %s", e.msg);
    rc = load(&tc, "t10.yaml", "- a\n- b\n", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "top level must be a mapping"), "non-mapping root: %s", e.msg);
    rc = load(&tc, "t11.yaml", "train:\n  epochs:\n", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "expects an int, got nothing"), "null int: %s", e.msg);
    rc = load(&tc, "empty.yaml", "", &e);
    QT_CHECK(rc == 0, "an empty file sets nothing (%s)", e.msg);

    memset(&e, 0, sizeof e);
    rc = qa_train_config_set(&tc, "train.lrr=1", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "unknown key 'train.lrr' in --set train.lrr=1; did you mean 'train.lr'?"),
             "--set unknown key: %s", e.msg);
    rc = qa_train_config_set(&tc, "train.lr", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "expected key=value"), "--set without '=': %s", e.msg);
    rc = qa_train_config_set(&tc, "train.micro_batch=0", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "must be in [1,)"), "--set range: %s", e.msg);
    rc = qa_train_config_set(&tc, "train.lr=1e-4x", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "key 'train.lr' in --set train.lr=1e-4x expects a float, got '1e-4x'"), "--set type: %s", e.msg);
    rc = qa_train_config_set(&tc, "data.files=a.json,,b.json", &e);
    QT_CHECK(rc != 0 && contains(e.msg, "empty item"), "empty list item: %s", e.msg);
    QT_CHECK(tc.train.micro_batch == 4 && tc.train.lr == 5e-5, "failed sets leave the values alone");

    /* finish: cross-key rules and derivations */
    memset(&e, 0, sizeof e);
    rc = qa_train_config_finish(&tc, &e);
    QT_CHECK(rc != 0 && contains(e.msg, "model.path is not set"), "finish: model.path required: %s", e.msg);
    qa_train_config_set(&tc, "model.path=/m", &e);
    rc = qa_train_config_finish(&tc, &e);
    QT_CHECK(rc != 0 && contains(e.msg, "data.files is empty"), "finish: data.files required: %s", e.msg);
    qa_train_config_set(&tc, "data.files=x.json", &e);
    qa_train_config_set(&tc, "data.pack_length=100", &e);
    qa_train_config_set(&tc, "data.cutoff=200", &e);
    rc = qa_train_config_finish(&tc, &e);
    QT_CHECK(rc != 0 && contains(e.msg, "data.pack_length (100"), "finish: pack_length < cutoff: %s", e.msg);
    qa_train_config_set(&tc, "data.pack_length=0", &e);
    qa_train_config_set(&tc, "train.seed=7", &e);
    memset(&e, 0, sizeof e);
    rc = qa_train_config_finish(&tc, &e);
    QT_CHECK(rc == 0, "finish ok (%s)", e.msg);
    QT_CHECK(!strcmp(tc.tokenizer.path, "/m/tokenizer.json"), "tokenizer.path derived: %s", tc.tokenizer.path);
    QT_CHECK(tc.data.pack_length == 200 && tc.data.shuffle_seed == 7, "pack_length and shuffle_seed derived");
    QT_CHECK(!strcmp(qa_cfg_origin(&tc.cfg, "data.shuffle_seed"), "derived from train.seed"), "derived origin");
    qa_train_config_free(&tc);
}

static void test_dump_roundtrip(void) {
    qa_train_config a, b, c;
    qa_err e = {0};
    qa_train_config_init(&a);
    qa_train_config_set(&a, "model.path=with \"quotes\" and \\ back", &e);
    qa_train_config_set(&a, "data.files=x.json,y z.json", &e);
    qa_train_config_set(&a, "train.lr=0.1", &e);
    qa_train_config_set(&a, "lora.dropout=0.05", &e);
    qa_train_config_set(&a, "lora.targets=[]", &e);
    char *y = qa_train_config_dump(&a, QA_CFG_YAML, 1);
    char *j = qa_train_config_dump(&a, QA_CFG_JSON, 0);
    QT_CHECK(contains(y, "train:\n") && contains(y, "  lr: 0.1   # --set\n") && contains(y, "  alpha: 16.0\n"),
             "YAML dump is nested, floats keep a '.', origins as comments");
    QT_CHECK(contains(y, "  lr: 0.1") && !contains(y, "0.10000000000000001"), "shortest round-trip floats");
    QT_CHECK(contains(j, "\"train\": {") && contains(j, "\"lr\": 0.1,") && contains(j, "\"targets\": []"), "JSON dump");
    qa_train_config_init(&b);
    qa_train_config_init(&c);
    int rb = load(&b, "dump.yaml", y, &e);
    QT_CHECK(rb == 0, "YAML dump loads back (%s)", e.msg);
    int rcj = load(&c, "dump.json", j, &e);
    QT_CHECK(rcj == 0, "JSON dump loads back through the YAML loader (%s)", e.msg);
    char *y2 = qa_train_config_dump(&b, QA_CFG_YAML, 0), *y3 = qa_train_config_dump(&c, QA_CFG_YAML, 0);
    char *y0 = qa_train_config_dump(&a, QA_CFG_YAML, 0);
    QT_CHECK(!strcmp(y0, y2), "YAML round trip is exact");
    QT_CHECK(!strcmp(y0, y3), "JSON round trip is exact");
    QT_CHECK(!strcmp(b.model.path, "with \"quotes\" and \\ back") && b.data.files.n == 2 && b.train.lr == 0.1,
             "values survive quoting");
    QT_CHECK(contains(y3, "weight_decay: 0.0") && contains(y3, "max_grad_norm: 1.0"), "whole floats print with .0");
    free(y); free(j); free(y2); free(y3); free(y0);
    qa_train_config_free(&a);
    qa_train_config_free(&b);
    qa_train_config_free(&c);
}

static void test_strlist_and_distance(void) {
    qa_strlist l = {0};
    qa_err e = {0};
    QT_CHECK(qa_strlist_parse(&l, "a, b ,c", &e) == 0 && l.n == 3 && !strcmp(l.v[1], "b"), "plain list");
    QT_CHECK(qa_strlist_parse(&l, "['a,b', c]", &e) == 0 && l.n == 2 && !strcmp(l.v[0], "a,b"), "quoted comma");
    QT_CHECK(qa_strlist_parse(&l, "  ", &e) == 0 && l.n == 0, "blank is empty");
    QT_CHECK(qa_strlist_parse(&l, "[a, b", &e) != 0, "unclosed bracket");
    QT_CHECK(qa_strlist_parse(&l, "a,", &e) != 0, "trailing comma");
    QT_CHECK(qa_strlist_parse(&l, "'a", &e) != 0, "unterminated quote");
    qa_strlist_free(&l);
    QT_CHECK(qa_edit_distance("kitten", "sitting") == 3 && qa_edit_distance("", "abc") == 3 &&
             qa_edit_distance("train.lr", "train.lr") == 0, "Levenshtein");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qa_cfg_test.XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    test_defaults();
    test_yaml_and_set();
    test_errors();
    test_dump_roundtrip();
    test_strlist_and_distance();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) {}
    return qt_finish();
}
