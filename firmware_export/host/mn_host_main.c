/* Host driver for the generated model: reads windows of MICRONAS_INPUT_BYTES int8 values from
 * the input file, runs micronas_invoke on each, writes MICRONAS_OUTPUT_BYTES per window. */
#include <stdio.h>

#include "micronas_model.h"

int main(int argc, char **argv) {
    static int8_t in[MICRONAS_INPUT_BYTES];
    static int8_t out[MICRONAS_OUTPUT_BYTES];
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
    while (fread(in, 1, MICRONAS_INPUT_BYTES, fi) == MICRONAS_INPUT_BYTES) {
        micronas_invoke(in, out);
        if (fwrite(out, 1, MICRONAS_OUTPUT_BYTES, fo) != MICRONAS_OUTPUT_BYTES) return 2;
    }
    fclose(fi);
    return fclose(fo) == 0 ? 0 : 2;
}
