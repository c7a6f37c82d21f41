/* Host driver for the generated model: reads windows of MICRONAS_INPUT_BYTES int8 values from
 * the input file, runs micronas_invoke on each, writes MICRONAS_OUTPUT_BYTES per window.
 * With -DMN_HOST_FLOAT (a model with float32 edges): windows of MICRONAS_MODEL_INPUT_ELEMS
 * micronas_model_input_t through micronas_invoke_float, MICRONAS_MODEL_OUTPUT_ELEMS out. */
#include <stdio.h>

#include "micronas_model.h"

#ifdef MN_HOST_FLOAT
#ifndef MICRONAS_FLOAT_API
#error "MN_HOST_FLOAT: this model has no float32 edge (no micronas_invoke_float)"
#endif
typedef micronas_model_input_t mn_in_t;
typedef micronas_model_output_t mn_out_t;
#define MN_IN_ELEMS MICRONAS_MODEL_INPUT_ELEMS
#define MN_OUT_ELEMS MICRONAS_MODEL_OUTPUT_ELEMS
#define MN_INVOKE micronas_invoke_float
#else
typedef int8_t mn_in_t;
typedef int8_t mn_out_t;
#define MN_IN_ELEMS MICRONAS_INPUT_BYTES
#define MN_OUT_ELEMS MICRONAS_OUTPUT_BYTES
#define MN_INVOKE micronas_invoke
#endif

int main(int argc, char **argv) {
    static mn_in_t in[MN_IN_ELEMS];
    static mn_out_t out[MN_OUT_ELEMS];
    if (argc != 3) {
        fprintf(stderr, "usage: %s INPUTS OUTPUTS\n", argv[0]);
        return 2;
    }
    FILE *fi = fopen(argv[1], "rb");
    FILE *fo = fopen(argv[2], "wb");
    if (!fi || !fo) {
        fprintf(stderr, "cannot open %s or %s\n", argv[1], argv[2]);
        return 2;
    }
    while (fread(in, sizeof in[0], MN_IN_ELEMS, fi) == MN_IN_ELEMS) {
        MN_INVOKE(in, out);
        if (fwrite(out, sizeof out[0], MN_OUT_ELEMS, fo) != MN_OUT_ELEMS) return 2;
    }
    fclose(fi);
    return fclose(fo) == 0 ? 0 : 2;
}
