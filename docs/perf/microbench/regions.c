// pages.c with one region per group: argv groups are "<MiB>:<offsets>", e.g. "12:0".
// Build: gcc -O2 -o /tmp/regions regions.c; run: /tmp/regions <work> <distance> <MiB>:<lines> ...
// Each packet reads, in every region, the listed lines of one random 4 KiB page of it, having
// prefetched them `distance` packets ahead, then does `work` dependent multiply-adds.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <sys/mman.h>
#include <x86intrin.h>
#include <string.h>
static uint64_t rng=0x9e3779b97f4a7c15;
static inline uint64_t nx(){rng^=rng<<13;rng^=rng>>7;rng^=rng<<17;return rng;}
int main(int argc,char**argv){
  int work=atoi(argv[1]); int dist=atoi(argv[2]); int g=argc-3; int off[16][16]; int cnt[16]; int k=0;
  char *reg[16]; uint64_t sz[16];
  for(int i=0;i<g;i++){cnt[i]=0; char*p=argv[3+i]; sz[i]=strtoul(p,&p,10)<<20; p++;
    while(*p){off[i][cnt[i]++]=strtol(p,&p,10); if(*p==',')p++;} k+=cnt[i];
    reg[i]=mmap(0,sz[i]+(2<<20),PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
    reg[i]=(char*)(((uintptr_t)reg[i]+(2<<20)-1)&~(uintptr_t)((2<<20)-1));
    madvise(reg[i],sz[i],MADV_HUGEPAGE); memset(reg[i],1,sz[i]);}
  int N=1<<21; char **addr=malloc(sizeof(char*)*N*k);
  for(int i=0;i<N;i++){int j=0;
    for(int q=0;q<g;q++){uint64_t base=(nx()%(sz[q]/4096))*4096; for(int z=0;z<cnt[q];z++) addr[(uint64_t)i*k+j++]=reg[q]+base+off[q][z]*64;}
  }
  uint64_t s=0; uint64_t t0=__rdtsc();
  for(int i=0;i<N;i++){
    if(i+dist<N) for(int j=0;j<k;j++) _mm_prefetch(addr[(uint64_t)(i+dist)*k+j],_MM_HINT_T0);
    for(int j=0;j<k;j++) s+=*(uint64_t*)(addr[(uint64_t)i*k+j]);
    for(int w=0;w<work;w++) { s=s*3+w; __asm__ volatile("" : "+r"(s)); }
  }
  uint64_t t1=__rdtsc();
  printf("%.1f ",(double)(t1-t0)/N);
  return (int)(s&1)*0;
}
