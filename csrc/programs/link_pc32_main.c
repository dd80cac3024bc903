/* link_pc32_main.c - calls into a shared library built from link_pc32.S and
 * prints what it returns (link_target's 42 plus link_counter's 1000). */
#include <stdio.h>

long link_pc32_entry(void);

int main(void)
{
    printf("{\"entry\": %ld}\n", link_pc32_entry());
    return 0;
}
