/*
 * proc.c - what every tool sets up in its process before the loop runs:
 * TERM and INT through a signalfd (no work in a signal handler), and an
 * open-file limit that fits the sessions it will open.
 */
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>

#include "tool_common.h"

int
tool_signal_fd(void)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return -1;
    /* A peer that went away must be an error return, not our death. */
    signal(SIGPIPE, SIG_IGN);
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

int
tool_raise_fd_limit(unsigned long need, unsigned long long *have)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;   /* nothing known: let the sessions find out */
    /* Raised only as far as needed, and never past the hard limit. */
    if (rl.rlim_cur < need) {
        rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need
                                                                         : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    *have = (unsigned long long)rl.rlim_cur;
    return rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need ? -1 : 0;
}
