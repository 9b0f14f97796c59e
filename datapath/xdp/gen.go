package xdp

//go:generate go tool bpf2go -tags linux -target bpfel -type frame_meta -type counter -type encap capture ../../bpf/capture.c -- -I../../bpf -O2 -g -Wall -Werror -mcpu=v3
