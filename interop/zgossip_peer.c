/*  zgossip_peer: drives czmq's own zgossip actor for the interop tests
 *  (crates/zmesh/tests/gossip_czmq.rs).
 *
 *  Commands on stdin, one per line:
 *      bind ENDPOINT        be a zgossip hub (czmq's server, with its 1 s client timeout)
 *      connect ENDPOINT     join a hub
 *      publish KEY VALUE    publish a tuple
 *  Prints "READY" once started and "DELIVER KEY VALUE" for every tuple czmq delivers.
 *  Ends when stdin closes.
 *
 *  Build: cc interop/zgossip_peer.c -o zgossip_peer $(pkg-config --cflags --libs libczmq libzmq)
 */
#include <czmq.h>
#include <stdio.h>
#include <string.h>

int main (void)
{
    zsys_handler_set (NULL);
    zactor_t *g = zactor_new (zgossip, "interop");
    assert (g);
    setvbuf (stdout, NULL, _IOLBF, 0);
    //  Unbuffered stdin: a second line must stay in the pipe, where zmq_poll sees it.
    setvbuf (stdin, NULL, _IONBF, 0);
    printf ("READY\n");
    zmq_pollitem_t items [] = {
        { zsock_resolve (g), 0, ZMQ_POLLIN, 0 },
        { NULL, 0, ZMQ_POLLIN, 0 }
    };
    char line [4096];
    while (true) {
        if (zmq_poll (items, 2, -1) == -1)
            break;
        if (items [0].revents & ZMQ_POLLIN) {
            char *cmd = NULL, *key = NULL, *value = NULL;
            if (zstr_recvx (g, &cmd, &key, &value, NULL) >= 1 && cmd && streq (cmd, "DELIVER"))
                printf ("DELIVER %s %s\n", key ? key : "", value ? value : "");
            zstr_free (&cmd);
            zstr_free (&key);
            zstr_free (&value);
        }
        if (items [1].revents & (ZMQ_POLLIN | ZMQ_POLLERR)) {
            if (!fgets (line, sizeof line, stdin))
                break;
            line [strcspn (line, "\r\n")] = 0;
            char *verb = strtok (line, " ");
            char *a = strtok (NULL, " ");
            char *b = strtok (NULL, " ");
            if (!verb)
                continue;
            if (streq (verb, "bind") && a)
                zstr_sendx (g, "BIND", a, NULL);
            else
            if (streq (verb, "connect") && a)
                zstr_sendx (g, "CONNECT", a, NULL);
            else
            if (streq (verb, "publish") && a && b)
                zstr_sendx (g, "PUBLISH", a, b, NULL);
            else
                fprintf (stderr, "zgossip_peer: bad command\n");
        }
    }
    zactor_destroy (&g);
    return 0;
}
