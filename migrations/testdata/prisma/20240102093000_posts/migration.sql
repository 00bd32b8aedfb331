-- CreateTable
CREATE TABLE "posts" (
    "id" SERIAL NOT NULL,
    "user_id" INTEGER NOT NULL REFERENCES "users" ("id"),

    CONSTRAINT "posts_pkey" PRIMARY KEY ("id")
);
