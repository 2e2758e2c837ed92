"""`accelerate launch train.py [config] [--field value ...] [--model.field value ...]`: see hf_rnn/train.py."""

from hf_rnn.train import console_main

if __name__ == "__main__":
    console_main()
