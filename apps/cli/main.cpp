#include <cstdio>
int main() { std::puts("lq " LQ_VERSION); return 0; }
