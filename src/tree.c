/*
** tree.c: freezing a process tree before it is signalled, so that none
** of it escapes.
**
** Signalled one process after another, a tree races its own signals: a
** shell whose child dies of its signal starts its next command before
** the shell's own signal comes, and that command escapes to init. So the
** caller stops the roots (SIGSTOP), brood__tree_freeze stops every
** descendant, scanning /proc again, once what it stopped has stopped,
** until a scan finds none that is not stopped yet (a stopped process
** cannot fork, so this ends), and only
** then is each one signalled, and continued (a stopped process acts on
** any signal but SIGKILL only once it runs again).
**
** Async-signal-safe: system calls only, buffers from the caller.
*/
#include <sched.h>
#include <signal.h>

#include "private.h"

/* A scan that finds nothing new ends the freeze; this many at most (a
** tree that keeps growing past it is one forking faster than we scan). */
#define FREEZE_ROUNDS 8

/* Wait (briefly) until pid has stopped or ended: SIGSTOP takes effect
** when the target next runs, and until then it may still fork. */
#define STOP_SPINS 2000
static void await_stop(int pid) {
  for (int i = 0; i < STOP_SPINS; i++) {
    char st = brood__proc_state(pid);
    if (st == 0 || st == 'T' || st == 't' || st == 'Z' || st == 'X') return;
    sched_yield();
  }
}

static int is_member(const brood_tree_member_t* members, size_t n, int pid) {
  for (size_t i = 0; i < n; i++)
    if (members[i].pid == pid) return 1;
  return 0;
}

size_t brood__tree_freeze(const int* roots, size_t nroots, int stop,
                          brood_proc_t* table, size_t table_cap,
                          brood_tree_member_t* queue,
                          brood_tree_member_t* members, size_t cap) {
  size_t nmembers = 0, settled = 0;
  if (stop)
    for (size_t r = 0; r < nroots; r++) await_stop(roots[r]);
  for (int round = 0; round < (stop ? FREEZE_ROUNDS : 1); round++) {
    /* Once all we stopped so far has stopped, a scan that finds nothing
    ** new is the last. */
    if (stop)
      for (; settled < nmembers; settled++) await_stop(members[settled].pid);
    int full;
    size_t n = brood__proc_scan(table, table_cap, &full);
    size_t head = 0, tail = 0, found = 0;
    for (size_t r = 0; r < nroots && tail < cap; r++) {
      queue[tail].pid = roots[r];
      queue[tail++].root = (int)r;
    }
    while (head < tail) {  /* breadth first: parents before children */
      brood_tree_member_t parent = queue[head++];
      for (size_t i = 0; i < n && tail < cap; i++) {
        if (table[i].ppid != parent.pid || table[i].pid <= 0) continue;
        queue[tail].pid = table[i].pid;
        queue[tail++].root = parent.root;
        if (nmembers < cap && !is_member(members, nmembers, table[i].pid)) {
          if (stop) kill((pid_t)table[i].pid, SIGSTOP);
          members[nmembers].pid = table[i].pid;
          members[nmembers++].root = parent.root;
          found++;
        }
      }
    }
    if (found == 0) break;
  }
  return nmembers;
}

void brood__tree_signal(const brood_tree_member_t* members, size_t n,
                        const int* signals) {
  for (size_t i = 0; i < n; i++)
    kill((pid_t)members[i].pid, signals[members[i].root]);
}

void brood__tree_continue(const brood_tree_member_t* members, size_t n) {
  for (size_t i = 0; i < n; i++) kill((pid_t)members[i].pid, SIGCONT);
}
