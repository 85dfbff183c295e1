/*
** w7_floor.c: the floor under W7 (one task in flight per worker) on this
** machine: no pool, no encoding, no interpreter. A parent and 2 forked
** workers over socketpairs; the parent writes a 16-byte task to each,
** and on each 16-byte answer (read after epoll_wait, blocking) writes the
** next, until 20000 are answered; the workers echo. The same system
** calls and wake-ups a pool makes per task, and nothing else: a pool
** that keeps one task in flight per worker cannot beat this rate.
** Prints RATE (tasks/s), timed after an untimed round of 500.
** Build: cc -O2 -o w7_floor w7_floor.c
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WORKERS 2
#define MSG 16

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char* what) {
  perror(what);
  exit(1);
}

/* Echo every message until the parent closes its end; waits in
** epoll_wait, as an event loop does. */
static void worker(int fd) {
  char buf[MSG * 8];
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN};
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) _exit(1);
  for (;;) {
    if (epoll_wait(ep, &ev, 1, -1) < 0) {
      if (errno == EINTR) continue;
      _exit(1);
    }
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n == 0) _exit(0);
    if (n < 0) {
      if (errno == EINTR) continue;
      _exit(1);
    }
    if (write(fd, buf, (size_t)n) != n) _exit(1);
  }
}

/* n tasks, one in flight per worker; returns the seconds taken. */
static double run(int ep, const int* fds, int n) {
  static const char task[MSG] = "task-0123456789";
  int sent = 0, done = 0;
  double t0 = now();
  for (int i = 0; i < WORKERS && sent < n; i++, sent++)
    if (write(fds[i], task, MSG) != MSG) die("write");
  while (done < sent) {
    struct epoll_event ev[WORKERS];
    int k = epoll_wait(ep, ev, WORKERS, -1);
    if (k < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int j = 0; j < k; j++) {
      int fd = fds[ev[j].data.u32];
      char buf[MSG * 8];
      ssize_t got = read(fd, buf, sizeof(buf));
      if (got <= 0) die("read");
      done += (int)(got / MSG);
      if (sent < n) {
        if (write(fd, task, MSG) != MSG) die("write");
        sent++;
      }
    }
  }
  return now() - t0;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 20000;
  int fds[WORKERS];
  pid_t pids[WORKERS];
  int ep = epoll_create1(0);
  if (ep < 0) die("epoll_create1");
  for (int i = 0; i < WORKERS; i++) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair");
    pids[i] = fork();
    if (pids[i] < 0) die("fork");
    if (pids[i] == 0) {
      close(sv[0]);
      worker(sv[1]);
    }
    close(sv[1]);
    fds[i] = sv[0];
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) != 0) die("epoll_ctl");
  }
  run(ep, fds, 500);
  double s = run(ep, fds, n);
  printf("RATE %.1f\n", n / s);
  for (int i = 0; i < WORKERS; i++) close(fds[i]);
  for (int i = 0; i < WORKERS; i++) waitpid(pids[i], NULL, 0);
  return 0;
}
