/*
 * cli.h - the operator commands of the compatd binary that talk to a
 * server over its HTTP API (client.h), local or remote:
 *
 *   compatd import     bulk-load .npy / .fvecs / raw float32 files
 *   compatd eval       run (or show) an evaluation, print its report
 *   compatd models     list the models
 *   compatd galleries  list the galleries, backfill coverage, query models
 *   compatd status     health, readiness, counts, the compatibility summary
 *   compatd items      list a gallery's items, delete them in bulk
 *
 * Every command takes --url (default $COMPATD_URL, else
 * http://127.0.0.1:8080), --key (default $COMPATD_KEY) and --cacert
 * (default $COMPATD_CACERT), and -h/--help.  Results go to stdout, progress
 * and errors to stderr; an error is one line "compatd <command>: ...".
 *
 * Each function gets argv from the command's own name on (argv[0] is
 * "import", ...) and returns the process exit status: 0 on success, 1 when
 * the operation failed (bad file, server error, unreachable server), 2 for
 * a bad command line.
 */
#ifndef CD_CLI_H
#define CD_CLI_H

/* `compatd import`: files into a gallery, in resumable batches. */
int cd_import_main(int argc, char **argv);

/* `compatd eval`: POST an evaluation from files, or --show ID; a table
 * or (--json) the server's JSON. */
int cd_eval_main(int argc, char **argv);

/* `compatd models`: name, dim, metric, compatible_with. */
int cd_models_main(int argc, char **argv);

/* `compatd galleries`: items, embeddings per model, query model status. */
int cd_galleries_main(int argc, char **argv);

/* `compatd status`: exit status 0 only when the server is ready. */
int cd_status_main(int argc, char **argv);

/* `compatd adapter fit|list|show|delete`: adapters (POST, GET, DELETE
 * /v1/adapters). */
int cd_adapter_main(int argc, char **argv);

/* `compatd items list|delete`: a gallery's items page by page (GET
 * /v1/galleries/{g}/items), or deleted in bulk from a file of ids. */
int cd_items_main(int argc, char **argv);

#endif
