/* libpq 17+'s encrypted cancel (PQcancelCreate, as psycopg uses on Ctrl-C) through the
 * gateway: connects with the conninfo in argv[1], starts a long statement, cancels it over
 * a connection negotiated like the session's own (TLS when the session has it), and
 * prints how the cancel and the statement ended. tests/tests/modern_clients.rs runs it. */
#include <stdio.h>
#include <string.h>
#include <libpq-fe.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: cancel CONNINFO\n");
        return 2;
    }
    PGconn *conn = PQconnectdb(argv[1]);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "connect: %s", PQerrorMessage(conn));
        return 1;
    }
    printf("connected ssl=%d\n", PQsslInUse(conn));
    if (!PQsendQuery(conn, "select pg_sleep(60)")) {
        fprintf(stderr, "send: %s", PQerrorMessage(conn));
        return 1;
    }
    PGcancelConn *cancel = PQcancelCreate(conn);
    if (!PQcancelBlocking(cancel)) {
        printf("cancel failed: %s", PQcancelErrorMessage(cancel));
    } else {
        printf("cancel sent\n");
    }
    PQcancelFinish(cancel);
    PGresult *res;
    while ((res = PQgetResult(conn)) != NULL) {
        if (PQresultStatus(res) == PGRES_FATAL_ERROR) {
            const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            printf("statement ended %s\n", state ? state : "?");
        } else {
            printf("statement ended %s\n", PQresStatus(PQresultStatus(res)));
        }
        PQclear(res);
    }
    PQfinish(conn);
    return 0;
}
