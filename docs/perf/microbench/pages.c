// Random lines per "packet", grouped by 4 KiB page: argv: <work> <distance> then one group per
// random 4 KiB-aligned place, listing the line offsets read in it (e.g. "0,2"). Each packet
// prefetches its lines `distance` packets ahead, reads them, then does `work` multiply-adds.
// Build: gcc -O2 -o /tmp/pages pages.c
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <sys/mman.h>
#include <x86intrin.h>
#include <string.h>
#define SZ (512UL<<20)
static uint64_t rng=0x9e3779b97f4a7c15;
static inline uint64_t nx(){rng^=rng<<13;rng^=rng>>7;rng^=rng<<17;return rng;}
// argv: work dist then groups like "0" "0,2" "0,1,3,4"
int main(int argc,char**argv){
  int work=atoi(argv[1]); int dist=atoi(argv[2]); int g=argc-3; int off[16][16]; int cnt[16]; int k=0;
  for(int i=0;i<g;i++){cnt[i]=0; char*p=argv[3+i]; while(*p){off[i][cnt[i]++]=strtol(p,&p,10); if(*p==',')p++;} k+=cnt[i];}
  char*b=mmap(0,SZ,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
  madvise(b,SZ,MADV_HUGEPAGE); memset(b,1,SZ);
  int N=1<<21; uint64_t *addr=malloc(sizeof(uint64_t)*N*k);
  for(int i=0;i<N;i++){int j=0;
    for(int q=0;q<g;q++){uint64_t base=(nx()%(SZ/4096))*4096; for(int z=0;z<cnt[q];z++) addr[(uint64_t)i*k+j++]=base+off[q][z]*64;}
  }
  uint64_t s=0; uint64_t t0=__rdtsc();
  for(int i=0;i<N;i++){
    if(i+dist<N) for(int j=0;j<k;j++) _mm_prefetch(b+addr[(uint64_t)(i+dist)*k+j],_MM_HINT_T0);
    for(int j=0;j<k;j++) s+=*(uint64_t*)(b+addr[(uint64_t)i*k+j]);
    for(int w=0;w<work;w++) { s=s*3+w; __asm__ volatile("" : "+r"(s)); }
  }
  uint64_t t1=__rdtsc();
  printf("%.1f ",(double)(t1-t0)/N);
}
