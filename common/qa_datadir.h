/* qa_datadir.h — where an installed qalign finds its data (prompt templates, example configs, sweep
 * grids): $QALIGN_DATADIR when set, else <directory of the running binary>/../share/qalign, the layout
 * `cmake --install` and the .deb write (so a prefix can be moved or unpacked anywhere). */
#ifndef QA_DATADIR_H
#define QA_DATADIR_H

/* The data directory as a heap string, or NULL when neither $QALIGN_DATADIR nor the directory beside
 * the binary exists (a build tree: files are then found relative to the working directory). */
char *qa_data_dir(void);
/* dir/rel under the data directory when that path exists; NULL otherwise. Heap string. */
char *qa_data_path(const char *rel);
#endif
