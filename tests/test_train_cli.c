/* test_train_cli.c — `qalign train` end to end: --dry-run output, --set precedence, and one bad input
 * per case (argv[1]), each checked for a non-zero exit and a message naming the file and record /
 * template and token / key. Under a sanitizer build any sanitizer report fails the case.
 *
 * Environment: QALIGN_BIN (the qalign binary), QALIGN_ASSETS (tokenizers/, paper-data/),
 * QALIGN_TEMPLATES (configs/templates). */
#include "testutil.h"

#include "common/qa_file.h"
#include "common/qa_mem.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];
static const char *bin, *assets;
static char out[1 << 17];

static char *put(const char *name, const char *text) {
    char *p = qa_path_join(dir, name);
    qa_err e = {0};
    if (qa_write_file_atomic(p, text, strlen(text), &e)) { qa_err_print(&e); exit(1); }
    return p;
}

/* A model directory with a tiny qwen2 config.json (the dry run reads no weights). */
static void make_model(void) {
    char *m = qa_path_join(dir, "model");
    qa_err e = {0};
    qa_mkdir_p(m, &e);
    free(put("model/config.json",
        "{\"architectures\": [\"Qwen2ForCausalLM\"], \"bos_token_id\": 151643, \"eos_token_id\": 151643,"
        " \"hidden_act\": \"silu\", \"hidden_size\": 64, \"intermediate_size\": 172, \"max_position_embeddings\": 4096,"
        " \"model_type\": \"qwen2\", \"num_attention_heads\": 4, \"num_hidden_layers\": 2, \"num_key_value_heads\": 2,"
        " \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, \"tie_word_embeddings\": false, \"use_sliding_window\": false,"
        " \"vocab_size\": 151646}\n"));
    free(m);
}

/* Run qalign train with the base config + extra args; returns the exit status, output in `out`. */
static int run_train(const char *extra) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "%s train --config %s/base.yaml --set model.path=%s/model "
             "--set tokenizer.path=%s/tokenizers/qwen1_5-qwen2.tokenizer.json %s",
             bin, dir, dir, assets, extra);
    int rc = qt_run(cmd, out, sizeof out);
    return rc;
}

static void no_sanitizer_report(void) {
    QT_CHECK(!strstr(out, "AddressSanitizer") && !strstr(out, "LeakSanitizer") && !strstr(out, "runtime error:"),
             "no sanitizer report");
}

static void expect_fail(const char *extra, int want_rc, const char *needle1, const char *needle2) {
    int rc = run_train(extra);
    QT_CHECK(rc == want_rc, "exit status %d (want %d)", rc, want_rc);
    QT_CHECK(strstr(out, needle1) != NULL, "message has \"%s\"", needle1);
    if (needle2) QT_CHECK(strstr(out, needle2) != NULL, "message has \"%s\"", needle2);
    no_sanitizer_report();
    if (qt_failed) printf("--- output ---\n%s\n", out);
}

static const char *GOOD =
    "[\n    {\"input\": \"前提: 一个男孩。\\n答案: \\\"\\nTranslate the input from Chinese to English:\\n\",\n"
    "     \"answer\": \"Premise: A boy.\\nAnswer: \\\"\"},\n"
    "    {\"input\": \"b\", \"answer\": \"B\"},\n    {\"input\": \"c\", \"answer\": \"C\"}\n]\n";

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: test_train_cli CASE\n"); return 2; }
    const char *cs = argv[1];
    bin = qt_env_or("QALIGN_BIN", "qalign");
    assets = qt_env_or("QALIGN_ASSETS", "assets");
    snprintf(dir, sizeof dir, "/tmp/qa_train_cli.XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    make_model();
    char base[2048];
    snprintf(base, sizeof base,
             "data:\n  files: [%s/paper-data/snli/snli_zh10k_train_question.json, %s/paper-data/snli/snli_es10k_train_question.json]\n"
             "  max_examples: 150\n  cutoff: 128\n  template: qwen\ntrain:\n  epochs: 2\n  threads: 2\n",
             assets, assets);
    free(put("base.yaml", base));
    char extra[4096];

    if (!strcmp(cs, "dry_run")) {
        int rc = run_train("--dry-run");
        QT_CHECK(rc == 0, "dry run exits 0 (got %d)", rc);
        QT_CHECK(strstr(out, "max_examples: 150   # ") && strstr(out, "base.yaml (line 3)"), "resolved config with origins");
        QT_CHECK(strstr(out, "examples: 300 (train 285, validation 15)") != NULL, "example counts after the split");
        QT_CHECK(strstr(out, "steps per epoch") && strstr(out, "warmup steps") && strstr(out, "memory estimate per rank"),
                 "steps and memory estimate printed");
        QT_CHECK(strstr(out, "end token 151645 '<|im_end|>'") != NULL, "template resolved against the tokenizer");
        /* --set beats the file: epochs 2 -> 1 halves the total */
        const char *p = strstr(out, "steps per epoch");
        long spe = p ? strtol(p + strlen("steps per epoch"), NULL, 10) : -1;
        p = strstr(out, "total steps");
        long tot = p ? strtol(p + strlen("total steps"), NULL, 10) : -1;
        QT_CHECK(spe > 0 && tot == 2 * spe, "2 epochs from the file: total %ld = 2 x %ld", tot, spe);
        rc = run_train("--set train.epochs=1 --dry-run");
        p = strstr(out, "total steps");
        long tot1 = p ? strtol(p + strlen("total steps"), NULL, 10) : -1;
        QT_CHECK(rc == 0 && tot1 == spe && strstr(out, "epochs: 1   # --set"), "--set train.epochs=1 overrides the file");
        rc = run_train("--set data.packing=false --set train.micro_batch=5 --set train.grad_accum=3 --dry-run");
        QT_CHECK(rc == 0 && strstr(out, "steps per epoch           19 (285 training rows, one example each)"),
                 "unpacked: ceil(285 / 15) = 19 steps per epoch");
        rc = run_train("--print-config --json");
        QT_CHECK(rc == 0 && strstr(out, "\"max_examples\": 150") && strstr(out, "\"tokenizer\": {"), "--print-config --json");
        /* the shorthands: --threads N = --set train.threads=N, --device NAME (--backend) = --set model.device=NAME,
         * each applied in its place among the --set */
        rc = run_train("--threads 3 --device emu --print-config");
        QT_CHECK(rc == 0 && strstr(out, "threads: 3   # --set") && strstr(out, "device: \"emu\"   # --set"),
                 "--threads 3 --device emu set train.threads and model.device");
        rc = run_train("--set model.device=cpu --backend=emu --threads=1 --set train.threads=4 --print-config");
        QT_CHECK(rc == 0 && strstr(out, "device: \"emu\"   # --set") && strstr(out, "threads: 4   # --set"),
                 "--backend=emu after --set model.device=cpu wins; --set train.threads=4 after --threads=1 wins");
        rc = run_train("--device emu --dry-run");
        QT_CHECK(rc == 0 && strstr(out, "device: emu (model.device emu, --set") &&
                 strstr(out, "emu backend, what the allocations make)"),
                 "--dry-run --device emu: the memory of the emulated device");
        rc = run_train("--device tpu --dry-run");
        QT_CHECK(rc == 2 && strstr(out, "model.device") && strstr(out, "tpu"), "--device tpu: exit 2 naming model.device");
        rc = run_train("--device");
        QT_CHECK(rc == 2 && strstr(out, "--device needs a value"), "--device without a value: exit 2");
        if (qt_failed) printf("--- output ---\n%s\n", out);
        no_sanitizer_report();
    } else if (!strcmp(cs, "missing_answer")) {
        char *f = put("d.json", "[\n  {\"input\": \"a\", \"answer\": \"A\"},\n  {\"input\": \"b\"}\n]\n");
        snprintf(extra, sizeof extra, "--set data.files=%s --dry-run", f);
        expect_fail(extra, 1, "d.json: record 1 has no \"answer\"", NULL);
        free(f);
    } else if (!strcmp(cs, "not_array")) {
        char *f = put("d.json", "{\"input\": \"a\", \"answer\": \"A\"}\n");
        snprintf(extra, sizeof extra, "--set data.files=%s --dry-run", f);
        expect_fail(extra, 1, "d.json: the top level is an object; expected a JSON array", NULL);
        free(f);
    } else if (!strcmp(cs, "jsonl")) {
        char *f = put("d.jsonl", "{\"input\": \"a\", \"answer\": \"A\"}\n{\"input\": \"b\", \"answer\": \"B\"}\n");
        snprintf(extra, sizeof extra, "--set data.files=%s --dry-run", f);
        expect_fail(extra, 1, "d.jsonl (line 2", "invalid JSON");
        free(f);
    } else if (!strcmp(cs, "empty_file")) {
        char *f = put("d.json", "");
        snprintf(extra, sizeof extra, "--set data.files=%s/paper-data/snli/snli_es10k_train_question.json,%s --dry-run",
                 assets, f);
        expect_fail(extra, 1, "d.json is empty", NULL);
        free(f);
    } else if (!strcmp(cs, "empty_array")) {
        char *f = put("d.json", "[ ]\n");
        snprintf(extra, sizeof extra, "--set data.files=%s --dry-run", f);
        expect_fail(extra, 1, "d.json: the array holds no records", NULL);
        free(f);
    } else if (!strcmp(cs, "bad_record")) {
        char *f = put("d.json", "[{\"input\": \"a\", \"answer\": \"A\"}, {\"input\": \"b\", \"answer\": 5}, \"x\"]");
        snprintf(extra, sizeof extra, "--set data.files=%s --dry-run", f);
        expect_fail(extra, 1, "d.json: record 1: \"answer\" is a number, expected a string", NULL);
        free(f);
        f = put("e.json", "[{\"input\": \"a\", \"answer\": \"A\"}, [1, 2]]");
        snprintf(extra, sizeof extra, "--set data.files=%s --dry-run", f);
        expect_fail(extra, 1, "e.json: record 1 is an array, expected an object", NULL);
        free(f);
    } else if (!strcmp(cs, "missing_file")) {
        snprintf(extra, sizeof extra, "--set data.files=%s/nonexistent.json --dry-run", dir);
        expect_fail(extra, 1, "nonexistent.json", NULL);
    } else if (!strcmp(cs, "template_missing_token")) {
        /* the mistral template names <s>, which the Qwen tokenizer lacks */
        expect_fail("--set data.template=mistral --dry-run", 1, "mistral.yaml (line", "token '<s>' is not in the tokenizer as a special token");
        /* the qwen template with the Mistral tokenizer: <|im_start|> does not exist at all */
        snprintf(extra, sizeof extra, "--set tokenizer.path=%s/tokenizers/mistral-7b-v0.1.tokenizer.json --dry-run", assets);
        expect_fail(extra, 1, "qwen.yaml (line ", "token '<|im_start|>' is not in the tokenizer;");
    } else if (!strcmp(cs, "template_special_in_text")) {
        char *t = put("t.yaml", "prompt:\n  - text: \"<|im_start|>user\\n{input}\"\nresponse:\n  - text: \"{answer}\"\nend: \"<|im_end|>\"\n");
        char *f = put("d.json", GOOD);
        snprintf(extra, sizeof extra, "--set data.template=%s --set data.files=%s --dry-run", t, f);
        expect_fail(extra, 1, "t.yaml (line 2): text contains the special token '<|im_start|>'", NULL);
        free(t);
        free(f);
    } else if (!strcmp(cs, "template_unknown")) {
        expect_fail("--set data.template=chatml9 --dry-run", 1, "template 'chatml9' not found", NULL);
    } else if (!strcmp(cs, "config_unknown_key")) {
        expect_fail("--set train.lrr=1e-4 --dry-run", 2, "unknown key 'train.lrr' in --set train.lrr=1e-4; did you mean 'train.lr'?",
                    NULL);
        char *c = put("c.yaml", "train:\n  epochs: 1\n  warmup_ration: 0.1\n");
        snprintf(extra, sizeof extra, "--config %s --dry-run", c);
        expect_fail(extra, 2, "unknown key 'train.warmup_ration' in ", "c.yaml (line 3); did you mean 'train.warmup_ratio'?");
        free(c);
    } else if (!strcmp(cs, "config_type")) {
        char *c = put("c.yaml", "data:\n  cutoff: long\n");
        snprintf(extra, sizeof extra, "--config %s --dry-run", c);
        expect_fail(extra, 2, "key 'data.cutoff' in ", "c.yaml (line 2) expects an int, got 'long'");
        free(c);
        expect_fail("--set lora.targets=q_proj,qkv --dry-run", 2, "item 'qkv' is not one of", NULL);
    } else if (!strcmp(cs, "world_not_divisible")) {
        expect_fail("--world-size 3 --dry-run", 2, "train.grad_accum = 4", "not divisible by the 3 ranks");
    } else {
        fprintf(stderr, "unknown case %s\n", cs);
        return 2;
    }
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf '%s'", dir);
    if (system(rm)) {}
    return qt_finish();
}
