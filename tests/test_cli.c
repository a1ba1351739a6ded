/* test_cli.c - being written: skipped (exit 77) until it is. */
int main(void)
{
    return 77;
}
