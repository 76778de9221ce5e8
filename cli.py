def main(argv=None):
    print("tessel")
