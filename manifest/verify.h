/*
 * The verifier's engine (SPEC section 8): a streaming merge of a manifest
 * with the tree it describes, the SHA-1 of every file recomputed on N
 * threads, each discrepancy reported in manifest order, the repaired
 * manifest written as it goes, and checkpoints to resume from.  Plain C:
 * `mirrordav verify` drives it and does the reporting.
 */
#ifndef MIRRORDAV_VERIFY_H
#define MIRRORDAV_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#include "manifest/manifest.h"

typedef enum {
    VERIFY_MISSING, /* in the manifest, absent from the tree */
    VERIFY_EXTRA,   /* in the tree, absent from the manifest */
    VERIFY_TYPE,
    VERIFY_SIZE,
    VERIFY_MTIME,
    VERIFY_HASH,    /* the data differs from the manifest */
    VERIFY_SIDECAR, /* the SHA-1 recorded on receipt differs from the data */
    VERIFY_MODE,    /* --strict only */
    VERIFY_OWNER,   /* --strict only */
    VERIFY_CORRUPT_MANIFEST,
    VERIFY_NKINDS
} verify_kind;

const char *verify_kind_name(verify_kind k);

typedef struct {
    const char *path; /* relative to the tree the manifest describes */
    verify_kind kind;
    const char *expected;
    const char *actual;
} verify_discrepancy;

typedef struct {
    uint64_t entries;      /* manifest entries compared */
    uint64_t files;        /* files whose data was checked */
    uint64_t bytes;        /* bytes of data checked */
    uint64_t bytes_read;   /* bytes actually read and hashed */
    uint64_t reused_files; /* taken from an earlier clean result */
    uint64_t reused_bytes;
    uint64_t discrepancies;
    uint64_t by_kind[VERIFY_NKINDS];
    uint64_t failed_entries; /* entries left out of the repaired manifest */
    uint64_t expected_bytes; /* the manifest's file sizes, summed */
    int resumed;             /* continued from a checkpoint */
} verify_stats;

typedef struct {
    const char *tree;     /* the directory the manifest describes */
    const char *manifest; /* the manifest file */
    /* The repaired manifest: written to a temporary file in the sidecar
     * folder of VERIFIED_OUT's directory, renamed into place at the end.
     * NULL: none. */
    const char *verified_out;
    /* Header pairs for the repaired manifest, over the client's. */
    const manifest_kv *verified_header;
    size_t nverified_header;
    /* A directory of the caller's for this run's checkpoints; NULL: no
     * checkpoints.  RESUME: continue from the one found there. */
    const char *checkpoint_dir;
    int resume;
    int jobs;   /* hashing threads, >= 1 */
    int strict; /* compare mode and owner too */
    /* Record each file's result in its sidecar. */
    int record_sidecars;
    /* Where to write this run's index of the files found clean (their
     * identity and SHA-1, in manifest order); NULL: none. */
    const char *index_out;
    /* Incremental: an earlier run's index (the newest verified snapshot).
     * A file whose identity there equals its identity here takes that
     * result without being read. */
    const char *since_index;
    int64_t now; /* the time recorded in sidecars */
    /* Called in manifest order, on the calling thread; non-zero stops. */
    int (*on_discrepancy)(void *ctx, const verify_discrepancy *d);
    /* Called about once a second, and once at the end with FINAL set. */
    void (*on_progress)(void *ctx, const verify_stats *st, int final);
    void *ctx;
} verify_opts;

/* Runs one manifest.  0 when it ran to the end (discrepancies, if any,
 * went to on_discrepancy and are counted in ST); MANIFEST_ECORRUPT when
 * the manifest is corrupt (reported as a VERIFY_CORRUPT_MANIFEST
 * discrepancy naming the line; no repaired manifest is written); -errno
 * on an I/O error, with ERR saying what failed. */
int verify_run(const verify_opts *o, verify_stats *st, char *err,
               size_t errsz);

#endif
