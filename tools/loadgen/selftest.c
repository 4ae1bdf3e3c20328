/*
 * selftest.c - "coap2mqtt-loadgen --selftest": a few seconds' functional
 * check without a broker, for `make test`: starts coap2mqtt-bareserver (next
 * to this binary) on a free port, then runs 20 PSK sensors pushing CON in
 * closed loop and 20 sensors sending NON notifications, and checks that
 * every handshake, registration and observation succeeded and readings
 * were answered.  No timing is asserted.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <jansson.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "coap2mqtt/log.h"
#include "lg.h"
#include "report.h"

#define KEY "selftest-secret"

static int
free_udp_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), port = -1;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static pid_t
start_bare(const char *argv0, int port)
{
    char exe[PATH_MAX], dir[PATH_MAX], bin[PATH_MAX + 32], listen[64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    pid_t pid;

    if (n <= 0)
        snprintf(exe, sizeof(exe), "%s", argv0);
    else
        exe[n] = '\0';
    snprintf(dir, sizeof(dir), "%s", exe);
    snprintf(bin, sizeof(bin), "%s/coap2mqtt-bareserver", dirname(dir));
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    pid = fork();
    if (pid == 0) {
        execl(bin, bin, "--listen", listen, "--key", KEY, "--observe",
              "--duration", "30", (char *)NULL);
        fprintf(stderr, "selftest: cannot run %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    usleep(300000);
    return pid;
}

/* Runs one short loadgen pass in a child and reads its JSON back. */
static json_t *
pass(const char *argv0, int port, bool observe, const char *json)
{
    char target[64], *args[32];
    int n = 0, status;
    pid_t pid;

    snprintf(target, sizeof(target), "127.0.0.1:%d", port);
    args[n++] = (char *)argv0;
    args[n++] = "--target"; args[n++] = target;
    args[n++] = "--key"; args[n++] = KEY;
    args[n++] = "--sensors"; args[n++] = "20";
    args[n++] = "--bind"; args[n++] = observe ? "127.2.1.1" : "127.2.0.1";
    args[n++] = "--warmup"; args[n++] = "0.3";
    args[n++] = "--duration"; args[n++] = "1";
    args[n++] = "--drain"; args[n++] = "0.5";
    args[n++] = "--json"; args[n++] = (char *)json;
    args[n++] = "--label"; args[n++] = observe ? "selftest-observe" : "selftest-push";
    if (observe) {
        args[n++] = "--observe"; args[n++] = "--non";
        args[n++] = "--rate"; args[n++] = "2000";
    }
    args[n] = NULL;
    pid = fork();
    if (pid == 0) {
        execv("/proc/self/exe", args);
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0)
        return NULL;
    return json_load_file(json, 0, NULL);
}

static json_int_t
get(json_t *j, const char *obj, const char *key)
{
    return json_integer_value(json_object_get(json_object_get(j, obj), key));
}

int
selftest(const char *argv0)
{
    char dir[] = "/tmp/lg-selftest.XXXXXX", f1[64], f2[64];
    int port = free_udp_port(), ok = 0, status;
    pid_t bare;
    json_t *a, *b;

    if (port < 0 || !mkdtemp(dir))
        return 1;
    snprintf(f1, sizeof(f1), "%s/push.json", dir);
    snprintf(f2, sizeof(f2), "%s/observe.json", dir);
    bare = start_bare(argv0, port);
    a = pass(argv0, port, false, f1);
    b = pass(argv0, port, true, f2);
    if (bare > 0) {
        kill(bare, SIGTERM);
        waitpid(bare, &status, 0);
    }
    if (a && get(a, "handshakes", "ok") == 20 && get(a, "coap", "registered") == 20 &&
        get(a, "coap", "acked_window") > 0 && get(a, "coap", "errors") == 0)
        ok++;
    else
        fprintf(stderr, "selftest: push pass failed\n");
    if (b && get(b, "handshakes", "ok") == 20 && get(b, "coap", "observed") == 20 &&
        get(b, "coap", "sent_window") > 0 && get(b, "coap", "errors") == 0)
        ok++;
    else
        fprintf(stderr, "selftest: observe pass failed\n");
    json_decref(a);
    json_decref(b);
    unlink(f1);
    unlink(f2);
    rmdir(dir);
    printf("selftest: %s\n", ok == 2 ? "ok" : "FAILED");
    return ok == 2 ? 0 : 1;
}
