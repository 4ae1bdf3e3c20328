/*
 * signals.c - TERM and INT reach the tools' epoll loops through a signalfd,
 * so no work is done in a signal handler.
 */
#include <signal.h>
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
